//! The OpenAPI document tells every status a route can answer: besides what each handler
//! documents, what the layers in front of it answer (the gate: setup, session, CSRF; changes held
//! while a version is on trial) and what axum's extractors refuse (a body that is not JSON, of
//! the wrong shape or too large; a path parameter that does not parse). Added here from the
//! same rules those layers follow, so that the document cannot drift from them.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

use super::auth;

/// Adds to every operation the statuses its layers and extractors can answer.
pub fn with_every_status(mut doc: OpenApi) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        let methods = [
            (false, &mut item.get),
            (true, &mut item.put),
            (true, &mut item.post),
            (true, &mut item.delete),
            (true, &mut item.patch),
        ];
        for (changes, operation) in methods {
            if let Some(operation) = operation {
                add_statuses(path, changes, operation);
            }
        }
    }
    doc
}

fn add_statuses(path: &str, changes: bool, operation: &mut Operation) {
    let gate = auth::gate_for(path);
    if gate.needs_setup {
        add(operation, "428", "setup is not complete yet (`redirect`: the wizard)");
    }
    if gate.needs_session {
        add(operation, "401", "no session");
        if changes {
            add(operation, "403", "no CSRF token, or not allowed to");
        }
    }
    if changes && super::held_on_trial(path) {
        add(operation, "409", "held: this version of PIC is on trial until its boot check passes (`on_trial`)");
    }
    if operation.request_body.as_ref().is_some_and(takes_json) {
        add(operation, "400", "the body is not JSON");
        add(operation, "413", "the body is too large");
        add(operation, "415", "the body is not `application/json`");
        add(operation, "422", "the JSON has the wrong shape (unknown or missing fields, wrong types)");
    }
    let in_path = operation.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.parameter_in == ParameterIn::Path,
        RefOr::Ref(_) => false,
    });
    if in_path {
        add(operation, "400", "a path parameter does not parse");
    }
}

fn takes_json(body: &RefOr<utoipa::openapi::request_body::RequestBody>) -> bool {
    matches!(body, RefOr::T(body) if body.content.contains_key("application/json"))
}

/// Adds `status` unless the handler documents it already (its own words are more precise).
fn add(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        let mut response = Response::new(description);
        let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
        response.content.insert("application/json".into(), RefOr::T(body));
        RefOr::T(response)
    });
}
