//! The audit page at `/admin`: one HTML file, one script, one stylesheet, compiled into the
//! binary so that the service needs no asset folder and the page no build step. The files
//! themselves hold no secret; the page asks for the admin token and sends it to the admin API
//! (`admin.rs`), which is where the guard is. Without `ADMIN_API_TOKEN` the page does not
//! exist either (404), like the API it drives.
//!
//! The page obeys the service's Content-Security-Policy (`security_headers`): no inline script,
//! no `on*` attributes, nothing from another origin.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::AppState;
use super::errors::ApiError;

const INDEX: &str = include_str!("admin_page/index.html");
const SCRIPT: &str = include_str!("admin_page/app.js");
const STYLE: &str = include_str!("admin_page/app.css");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(index))
        .route("/admin/", web::get().to(index))
        .route("/admin/app.js", web::get().to(script))
        .route("/admin/app.css", web::get().to(style));
}

fn serve(
    state: &AppState,
    content_type: &'static str,
    body: &'static str,
) -> Result<HttpResponse, ApiError> {
    if state.config.admin_api_token.is_none() {
        return Err(ApiError::not_found());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(body))
}

async fn index(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&state, "text/html; charset=utf-8", INDEX)
}

async fn script(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&state, "text/javascript; charset=utf-8", SCRIPT)
}

async fn style(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&state, "text/css; charset=utf-8", STYLE)
}
