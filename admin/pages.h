// The status page for users and the admin page: plain HTML, CSS and JS from
// admin/pages, compiled into the binary (cmake/embed_pages.cmake) and served on the
// side port. They read everything from the REST API with the key the person enters.
#pragma once

#include <cstddef>

#include "net/event_server.h"

namespace tollgate {

struct PageAsset {
  const char* path;  // where it is served
  const char* content_type;
  const char* body;
};
extern const PageAsset kPageAssets[];
extern const size_t kPageAssetCount;

// GET for every page and asset, with headers that keep the pages to themselves:
// a strict Content-Security-Policy (no inline script), no framing, no referrer.
void RegisterPages(EventServer& server);

}  // namespace tollgate
