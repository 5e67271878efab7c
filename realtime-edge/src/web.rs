//! The web client's files (`web/dist`, built by `npm run build` in `web/`), served beside the
//! API: `/assets/*` are content-hashed by the build and cached for a year; every other path that
//! is not a file answers with `index.html`, so the client's own routes survive a reload; a
//! gzipped copy the build left beside a file is sent to clients that accept gzip. The API
//! routes (`/graphql`, `/healthz`, …) are matched first and never reach these files.

use std::path::Path;

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

/// Where the build puts files whose names carry their content hash.
const HASHED_PREFIX: &str = "/assets/";

/// The client loads nothing from elsewhere and runs no inline script: a message body that
/// slipped into the page as markup still could not run.
const POLICY: &str = "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; \
                      img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                      object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `router` with the files of `dir` served at `/` for whatever it does not route itself.
pub fn with_web_dir(router: Router, dir: &Path) -> Router {
    // The build writes a gzipped copy beside each text file (`app.js.gz`): sent, with
    // `Content-Encoding: gzip`, to every client that accepts it, at no cost per request.
    let index = ServeFile::new(dir.join("index.html")).precompressed_gzip();
    let files = ServeDir::new(dir).precompressed_gzip().fallback(index);
    // A missing hashed file is a 404, not the page: a stale page asking for an old bundle
    // must fail visibly rather than parse HTML as JavaScript.
    let hashed = ServeDir::new(dir.join("assets")).precompressed_gzip();
    let web = Router::new()
        .nest_service("/assets", hashed)
        .fallback_service(files)
        .layer(axum::middleware::from_fn(headers));
    router.merge(web)
}

async fn headers(request: Request, next: Next) -> Response {
    let hashed = request.uri().path().starts_with(HASHED_PREFIX);
    let mut response = next.run(request).await;
    let cache = if hashed && response.status().is_success() {
        "public, max-age=31536000, immutable"
    } else {
        // The page itself is revalidated every time, so a new build is picked up at once.
        "no-cache"
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    response
}
