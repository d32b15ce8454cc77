# Writes OUT, a C++ file holding the files of admin/pages as string literals, so the
# binary serves its pages with no files to deploy. Run by CMake at build time:
#   cmake -DSRC=<admin/pages> -DOUT=<file.cc> -P embed_pages.cmake
set(assets
  "/dashboard/budget|budget.html|text/html"
  "/dashboard/admin/budget|admin.html|text/html"
  "/dashboard/assets/common.css|common.css|text/css"
  "/dashboard/assets/common.js|common.js|text/javascript"
  "/dashboard/assets/budget.js|budget.js|text/javascript"
  "/dashboard/assets/admin.js|admin.js|text/javascript")
set(body "// Generated from admin/pages by cmake/embed_pages.cmake; do not edit.\n#include \"admin/pages.h\"\n\nnamespace tollgate {\n\nconst PageAsset kPageAssets[] = {\n")
foreach(asset IN LISTS assets)
  string(REPLACE "|" ";" parts "${asset}")
  list(GET parts 0 path)
  list(GET parts 1 file)
  list(GET parts 2 type)
  file(READ "${SRC}/${file}" content)
  string(FIND "${content}" ")tgpage\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${file} contains the raw-string delimiter")
  endif()
  string(APPEND body "    {\"${path}\", \"${type}; charset=utf-8\", R\"tgpage(${content})tgpage\"},\n")
endforeach()
string(APPEND body "};\nconst size_t kPageAssetCount = std::size(kPageAssets);\n\n}  // namespace tollgate\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
