//! Rendering: the validated config and public keys, through the embedded minijinja templates,
//! into one bundle of files per enabled service. A pure function: no clock, no environment, no I/O.

mod apps_context;
mod bundle;
mod context;
mod exits_context;
mod services_context;

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, syntax::SyntaxConfig};

pub use bundle::Bundle;
pub use context::{Context, FRONT_DOOR_PORT, PublicKeys, WEBUI_PORT};
pub use exits_context::{EXIT_DNS_PORT_BASE, EXIT_INTERFACE_PREFIX, EXIT_TABLE_BASE, exit_service};

use crate::config::ValidConfig;
use crate::config::services;
use crate::error::Error;
use crate::templates::{self, TEMPLATE_SUFFIX};

/// The template of an app's `container.json`, rendered with `app` (one of the context's `apps`).
const APP_CONTAINER: &str = "_app/container.json.j2";

/// Holds the template environment; build it once and render many configs with it.
pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        for (path, source) in templates::EMBEDDED {
            if path.ends_with(TEMPLATE_SUFFIX) {
                // A template that does not parse is a build defect, caught by every render test.
                env.add_template(path, source).unwrap_or_else(|e| panic!("template {path}: {e:#}"));
            }
        }
        Renderer { env }
    }

    /// Renders every enabled service that has templates; the map is keyed by service name.
    pub fn render(&self, config: &ValidConfig, keys: &PublicKeys) -> Result<BTreeMap<String, Bundle>, Error> {
        self.render_context(config, &Self::context(config, keys))
    }

    /// The template context of a config, as the template engine holds it.
    pub fn context(config: &ValidConfig, keys: &PublicKeys) -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(Context::new(config, keys)))
    }

    /// Renders with a context made by [`Renderer::context`] for the same config.
    pub fn render_context(
        &self,
        config: &ValidConfig,
        context: &minijinja::Value,
    ) -> Result<BTreeMap<String, Bundle>, Error> {
        let mut bundles = BTreeMap::new();
        for service in services::enabled(config).filter(|s| templates::has_service(s.name)) {
            let mut bundle = Bundle::default();
            for (file, source) in templates::of_service(service.name) {
                let (name, contents) = match file.strip_suffix(TEMPLATE_SUFFIX) {
                    Some(name) => {
                        let template_name = format!("{}/{file}", service.name);
                        let render_error = |e: minijinja::Error| Error::Render {
                            template: template_name.clone(),
                            message: format!("{e:#}"),
                        };
                        let template = self.env.get_template(&template_name).map_err(render_error)?;
                        (name, template.render(context.clone()).map_err(render_error)?)
                    }
                    None => (file, source.to_string()),
                };
                bundle.files.insert(name.to_string(), contents.into_bytes());
            }
            bundles.insert(service.name.to_string(), bundle);
        }
        if !config.apps.is_empty() {
            let template = self
                .env
                .get_template(APP_CONTAINER)
                .map_err(|e| Error::Render { template: APP_CONTAINER.into(), message: format!("{e:#}") })?;
            // The context's `apps` are the config's, in its order.
            let apps = context.get_attr("apps").unwrap_or_default();
            for (i, app) in config.apps.iter().enumerate() {
                let view = apps.get_item(&minijinja::Value::from(i)).unwrap_or_default();
                let local = minijinja::context! { app => view, ..context.clone() };
                let text = template.render(local).map_err(|e| Error::Render {
                    template: format!("{APP_CONTAINER} ({})", app.name),
                    message: format!("{e:#}"),
                })?;
                let bundle = Bundle { files: BTreeMap::from([("container.json".to_owned(), text.into_bytes())]) };
                bundles.insert(app.service(), bundle);
            }
        }
        // An exit that runs in a container (OpenVPN, Tor): its spec, its daemon's options and
        // the firewall inside it, from `_exit/<kind>/` (an OpenVPN provider's file itself
        // stays in secrets/).
        let exits = context.get_attr("exits").unwrap_or_default();
        for (view, exit) in exits.try_iter().into_iter().flatten().zip(sorted_exits(config)) {
            let Some(kind) = ["openvpn", "tor"].into_iter().find(|k| match *k {
                "openvpn" => exit.openvpn.is_some(),
                _ => exit.tor.is_some(),
            }) else {
                continue;
            };
            let service = exits_context::exit_service(&exit.name);
            let folder = format!("{EXIT_TEMPLATES}/{kind}");
            let local = minijinja::context! { exit => view, ..context.clone() };
            let mut bundle = Bundle::default();
            for (file, _) in templates::of_service(&folder) {
                let Some(name) = file.strip_suffix(TEMPLATE_SUFFIX) else { continue };
                let template_name = format!("{folder}/{file}");
                let render_error = |e: minijinja::Error| Error::Render {
                    template: format!("{template_name} ({service})"),
                    message: format!("{e:#}"),
                };
                let template = self.env.get_template(&template_name).map_err(render_error)?;
                bundle
                    .files
                    .insert(name.to_owned(), template.render(local.clone()).map_err(render_error)?.into_bytes());
            }
            bundles.insert(service, bundle);
        }
        Ok(bundles)
    }
}

/// The templates of exits that run in containers: `<this>/<kind>/`.
const EXIT_TEMPLATES: &str = "_exit";

/// The config's exits in the context's order (by name).
fn sorted_exits(config: &ValidConfig) -> Vec<&crate::config::Exit> {
    let mut exits: Vec<_> = config.connectivity.exits.iter().collect();
    exits.sort_by(|a, b| a.name.cmp(&b.name));
    exits
}
