//! `/notebooks/<name>/...`: the reverse proxy onto a notebook's Jupyter server, HTTP and
//! websockets, behind Petri's own auth. The Jupyter token is added here and never reaches the
//! browser.
//!
//! It is served on an address of its own (`notebooks.listen`), never on the web UI's: a notebook
//! page runs code that its outputs bring, and on the UI's origin that code could read the UI's
//! token. Jupyter's pages may still be framed by the web UI (`frame-ancestors`).
//!
//! Who may pass: a request with the owner's bearer token, or a browser with a notebook session
//! cookie. A browser gets the cookie from a one-time link (`?petri_link=...`, made by
//! `POST /api/v1/notebooks/<name>/open`), which is answered with a redirect to the same address
//! without the code.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_SECURITY_POLICY, COOKIE, HOST, LOCATION, SET_COOKIE, UPGRADE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use petri_domain::ErrorCode;

use crate::AppState;
use crate::error::ApiError;

/// The cookie that carries a browser's notebook session.
const SESSION_COOKIE: &str = "petri_notebook_session";

pub(crate) type ProxyClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

pub(crate) fn client() -> ProxyClient {
    // What is forwarded goes out when written.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

pub(crate) async fn forward(State(s): State<AppState>, mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(name) = path
        .strip_prefix("/notebooks/")
        .and_then(|rest| rest.split('/').next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return ApiError::new(ErrorCode::NotFound, "no such route").into_response();
    };
    if let Some(code) = query_value(req.uri(), "petri_link") {
        return sign_in(&s, req.uri(), &code, &name);
    }
    if let Err(refused) = authorized(&s, req.headers(), &name).await {
        return refused;
    }
    let upstream = match s.daemon.notebooks().upstream(&name).await {
        Ok(u) => u,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let upgrade = req.headers().contains_key(UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    // Jupyter lets only its own origin frame its pages; the web UI, on its own origin, may too.
    let frame_policy = format!(
        "frame-ancestors 'self' {}://{}:{}",
        s.scheme,
        caller_host(&parts.headers, s.notebooks_addr.ip(), s.api_addr.ip()),
        s.api_addr.port()
    );
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri: Uri = match format!("http://{}{path_and_query}", upstream.addr).parse() {
        Ok(u) => u,
        Err(_) => return ApiError::new(ErrorCode::BadRequest, "a bad path").into_response(),
    };
    let mut out = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(uri);
    let headers = out.headers_mut().expect("a fresh builder has headers");
    for (k, v) in parts.headers.iter() {
        if k == AUTHORIZATION || k == COOKIE {
            continue;
        }
        if !upgrade && HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        headers.append(k.clone(), v.clone());
    }
    if let Some(cookies) = other_cookies(&parts.headers) {
        headers.insert(COOKIE, cookies);
    }
    if !headers.contains_key(HOST) {
        headers.insert(
            HOST,
            HeaderValue::from_str(&upstream.addr.to_string()).expect("an address is a header"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&format!("token {}", upstream.token)) {
        headers.insert(AUTHORIZATION, v);
    }
    let Ok(out) = out.body(body) else {
        return ApiError::new(ErrorCode::BadRequest, "a bad request").into_response();
    };
    let mut resp = match s.proxy.request(out).await {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(
                ErrorCode::NotebookNotReady,
                format!("notebook `{name}` does not answer yet ({e}); try again in a moment"),
            )
            .into_response();
        }
    };
    if let Some(client_upgrade) = client_upgrade
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(client), Ok(server)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            let _ =
                tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(server))
                    .await;
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = resp.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    if let Ok(v) = HeaderValue::from_str(&frame_policy) {
        parts.headers.insert(CONTENT_SECURITY_POLICY, v);
    }
    Response::from_parts(parts, Body::new(body))
}

/// The host name the caller used to reach Petri (from `Host`, without the port), when it is one
/// a URL can carry as it is and it reaches `ip` (the address the notebooks, or the API, listen
/// on, or `api`, the API's own address); else `ip`.
fn caller_host(headers: &HeaderMap, ip: std::net::IpAddr, api: std::net::IpAddr) -> String {
    let given = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| match h.rfind(':') {
            // "[::1]:7878", "host:7878" (a bare "[::1]" keeps its colons)
            Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => {
                &h[..i]
            }
            _ => h,
        })
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    match given {
        // `localhost` (a caller on the daemon's socket) does not reach one outside address alone.
        Some("localhost") if !ip.is_loopback() && !ip.is_unspecified() => url_host(ip),
        // Listening on every interface (or the API's): the name the caller used reaches it.
        Some(h) if ip.is_unspecified() || ip == api => h.to_string(),
        _ => url_host(ip),
    }
}

/// An address as a URL's host: IPv6 in brackets.
fn url_host(ip: std::net::IpAddr) -> String {
    if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// Where a caller who reached the API with `headers` finds the notebooks.
pub(crate) fn notebooks_origin(s: &AppState, headers: &HeaderMap) -> String {
    format!(
        "{}://{}:{}",
        s.scheme,
        caller_host(headers, s.notebooks_addr.ip(), s.api_addr.ip()),
        s.notebooks_addr.port()
    )
}

/// Where a caller who reached the API with `headers` (over TCP, or over the daemon's socket,
/// where `Host` is `localhost`) finds the API on its TCP address.
pub(crate) fn api_origin(s: &AppState, headers: &HeaderMap) -> String {
    format!(
        "{}://{}:{}",
        s.scheme,
        caller_host(headers, s.api_addr.ip(), s.api_addr.ip()),
        s.api_addr.port()
    )
}

/// A bearer token that may run code as the notebook's user (a notebook runs whatever its user
/// types: `submit` on a thing of theirs), or a browser's session for this notebook.
async fn authorized(s: &AppState, headers: &HeaderMap, name: &str) -> Result<(), Response> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    if let Some(t) = bearer {
        let accounts = s.daemon.accounts().clone();
        let caller = tokio::task::spawn_blocking(move || accounts.authenticate(&t))
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()).into_response())?
            .map_err(|e| ApiError(e).into_response())?;
        // Every proxied request with a bearer token asks: the stored owner, no probe of Jupyter.
        let owner = match s.daemon.notebooks().owner(name).await {
            Ok(user) => user,
            Err(e) => return Err(ApiError::from(e).into_response()),
        };
        return crate::auth::allow(
            &caller,
            petri_daemon::accounts::Action::Submit,
            &owner,
            &format!("notebook {name}"),
        )
        .map_err(IntoResponse::into_response);
    }
    let signed_in = cookies(headers)
        .filter(|(k, _)| *k == SESSION_COOKIE)
        .any(|(_, v)| s.daemon.notebooks().session_valid(v, name));
    if signed_in {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Unauthorized,
        format!(
            "sign in to this notebook with a link from `petri notebook open {name}` (or send \
             `Authorization: Bearer <token>`)"
        ),
    )
    .into_response())
}

/// A one-time link: set the session cookie and send the browser on without the code.
fn sign_in(s: &AppState, uri: &Uri, code: &str, name: &str) -> Response {
    let Some(session) = s.daemon.notebooks().redeem_link(code, name) else {
        return ApiError::new(
            ErrorCode::Unauthorized,
            "this sign-in link was used already or has expired; get a new one with `petri \
             notebook open`",
        )
        .into_response();
    };
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("petri_link="))
        .collect();
    let mut target = uri.path().to_string();
    if !query.is_empty() {
        target = format!("{target}?{}", query.join("&"));
    }
    let cookie = format!("{SESSION_COOKIE}={session}; Path=/notebooks/; HttpOnly; SameSite=Strict");
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let (Ok(loc), Ok(c)) = (
        HeaderValue::from_str(&target),
        HeaderValue::from_str(&cookie),
    ) {
        resp.headers_mut().insert(LOCATION, loc);
        resp.headers_mut().insert(SET_COOKIE, c);
    }
    resp
}

fn query_value(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

/// The cookies for Jupyter (its own, such as `_xsrf`), without Petri's session.
fn other_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let rest: Vec<String> = cookies(headers)
        .filter(|(k, _)| *k != SESSION_COOKIE)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if rest.is_empty() {
        return None;
    }
    HeaderValue::from_str(&rest.join("; ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(given: Option<&str>, ip: &str, api: &str) -> String {
        let mut headers = HeaderMap::new();
        if let Some(h) = given {
            headers.insert(HOST, HeaderValue::from_str(h).unwrap());
        }
        caller_host(&headers, ip.parse().unwrap(), api.parse().unwrap())
    }

    #[test]
    fn the_caller_s_host_name_is_kept_only_where_it_reaches_the_address() {
        // The name the caller used, without its port, where it reaches the address.
        assert_eq!(host(Some("box.lan:7878"), "0.0.0.0", "0.0.0.0"), "box.lan");
        assert_eq!(host(Some("[::1]:7878"), "::1", "::1"), "[::1]");
        assert_eq!(host(Some("[::1]"), "::", "::1"), "[::1]");
        assert_eq!(
            host(Some("10.0.0.5:80"), "10.0.0.5", "10.0.0.5"),
            "10.0.0.5"
        );
        // Notebooks on their own address: the caller's name for the API does not reach them.
        assert_eq!(
            host(Some("box.lan:7878"), "10.0.0.7", "10.0.0.5"),
            "10.0.0.7"
        );
        // `localhost` (the daemon's socket) reaches one outside address only as that address.
        assert_eq!(host(Some("localhost"), "10.0.0.5", "10.0.0.5"), "10.0.0.5");
        assert_eq!(
            host(Some("localhost"), "127.0.0.1", "127.0.0.1"),
            "localhost"
        );
        // No `Host`, or one a URL cannot carry as it is: the address itself.
        assert_eq!(host(None, "fe80::1", "fe80::1"), "[fe80::1]");
        assert_eq!(host(Some("a b"), "127.0.0.1", "127.0.0.1"), "127.0.0.1");
        assert_eq!(host(Some("x/y:1"), "0.0.0.0", "0.0.0.0"), "0.0.0.0");
        assert_eq!(host(Some(":7878"), "127.0.0.1", "127.0.0.1"), "127.0.0.1");
    }
}
