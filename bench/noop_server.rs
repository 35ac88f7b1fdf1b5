//! The machine's ceiling for the benchmark: an actix-web server whose reprice handler only
//! parses the JSON body and answers 202, and whose GET answers a fixed small JSON.

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::value::RawValue;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Body<'a> {
    product_id: &'a str,
    #[serde(borrow)]
    price: &'a RawValue,
}

async fn reprice(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Body<'_>>(&body) {
        Ok(_) => HttpResponse::Accepted().finish(),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

async fn price() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(r#"{"productId":"p-1","price":19.99,"timestamp":1764774245.123456789}"#)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18090".into());
    HttpServer::new(|| {
        App::new()
            .route("/api/reprice", web::post().to(reprice))
            .route("/api/product/{id}/price", web::get().to(price))
    })
    .bind(addr)?
    .run()
    .await
}
