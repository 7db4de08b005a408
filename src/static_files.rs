//! The files under `static/`, compiled into the binary so that one file is the whole server
//! (the Dockerfile and Heroku need nothing beside it). Nothing is fetched from another host.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// (path under /static/, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/app.css"),
    ),
    (
        "draw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/draw.js"),
    ),
    (
        "track.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/track.js"),
    ),
    (
        "socket.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/socket.js"),
    ),
    (
        "race.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/race.js"),
    ),
    (
        "name.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/name.js"),
    ),
    (
        "lobby.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/lobby.js"),
    ),
    (
        "stats.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/stats.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../static/favicon.svg"),
    ),
    (
        "fonts/press-start-2p.woff2",
        "font/woff2",
        include_bytes!("../static/fonts/press-start-2p.woff2"),
    ),
    (
        "fonts/OFL.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../static/fonts/OFL.txt"),
    ),
];

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => HttpResponse::Ok()
            .content_type(*content_type)
            // Short cache: files change with releases and carry no version in their names.
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .body(*bytes),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("Not found"),
    }
}

pub async fn favicon() -> HttpResponse {
    serve(web::Path::from("favicon.svg".to_owned())).await
}
