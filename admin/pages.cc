#include "admin/pages.h"

namespace tollgate {

void RegisterPages(EventServer& server) {
  // Browsers ask for it on every page; there is none, and a 404 would be noise.
  server.Get("/favicon.ico",
             [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  for (size_t i = 0; i < kPageAssetCount; ++i) {
    const PageAsset& asset = kPageAssets[i];
    server.Get(asset.path, [&asset](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                     "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Referrer-Policy", "no-referrer");
      res.set_header("Cache-Control", "no-cache");
      res.set_content(asset.body, asset.content_type);
    });
  }
}

}  // namespace tollgate
