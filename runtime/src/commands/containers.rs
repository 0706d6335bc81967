//! `pic containers` and `pic activate`: the service containers from the command line.

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use pic_builder::State;

use crate::cli::{ContainersCommand, DockerArgs};
use crate::docker::{self, Engine, Publish, activation, container_name, health, stopped};
use crate::output::Output;

fn block_on<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Runtime::new().context("starting the async runtime")?.block_on(work)
}

async fn connect(args: &DockerArgs) -> Result<Engine> {
    Engine::connect(&args.docker_socket, args.publish).await
}

pub fn activate(state: &State, args: &DockerArgs, health_timeout: u64, out: &Output) -> Result<bool> {
    let (report, failures) = block_on(async {
        let engine = connect(args).await?;
        let gate = activation::Gate { limit: Duration::from_secs(health_timeout), on_healthy: &|_| {} };
        activation::activate(&engine, state, &gate).await
    })?;
    out.emit(&serde_json::json!({"report": report, "unhealthy": failures}), |_| {
        let mut s = String::new();
        for service in &report.services {
            s.push_str(&format!("{:<10} {:?}\n", service.service, service.action).to_lowercase());
        }
        for (service, error) in &failures {
            s.push_str(&format!("{service:<10} FAILED: {error}\n"));
        }
        s.trim_end().to_owned()
    });
    Ok(failures.is_empty())
}

/// Removes the containers of `services` if the engine answers (`pic serve` makes them anew);
/// when it does not, there are none running to worry about.
pub fn remove_services(socket: &str, services: &[String]) {
    let removed = block_on(async {
        let engine = Engine::connect(socket, Publish::None).await?;
        let running: Vec<String> = docker::container_infos(&engine).await?.into_iter().map(|i| i.name).collect();
        for service in services {
            let name = container_name(service);
            if running.contains(&name) {
                engine.remove(&name).await?;
                eprintln!("removed {name}: its data was replaced; `pic serve` (or `pic activate`) makes it anew");
            }
        }
        Ok(())
    });
    if let Err(error) = removed {
        tracing::debug!(error = %format!("{error:#}"), "no containers to recreate after the restore");
    }
}

/// Runs `action` on the container of `service`, or on every one for `all`.
fn each<F, Fut>(docker: &DockerArgs, service: &str, out: &Output, done: &str, action: F) -> Result<()>
where
    F: Fn(Engine, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let names = block_on(async {
        let engine = connect(docker).await?;
        let names: Vec<String> = if service == "all" {
            docker::container_infos(&engine).await?.into_iter().map(|i| i.name).collect()
        } else {
            vec![container_name(service)]
        };
        for name in &names {
            action(engine.clone(), name.clone()).await?;
        }
        Ok(names)
    })?;
    out.emit(&names, |names| {
        if names.is_empty() { "no service containers".into() } else { format!("{done}: {}", names.join(", ")) }
    });
    Ok(())
}

/// How long a service started from the command line has to pass its health check.
const START_HEALTH_TIMEOUT: u64 = 60;

/// The services `service` names: itself, or every one with a container for `all`.
fn services_named(docker: &DockerArgs, service: &str) -> Result<Vec<String>> {
    if service != "all" {
        return Ok(vec![service.to_owned()]);
    }
    block_on(async {
        Ok(docker::container_infos(&connect(docker).await?).await?.into_iter().map(|i| i.service).collect())
    })
}

pub fn run(state: &State, command: &ContainersCommand, out: &Output) -> Result<()> {
    match command {
        ContainersCommand::List { docker } => {
            let infos = block_on(async {
                let engine = connect(docker).await?;
                let mut infos = docker::container_infos(&engine).await?;
                let (_, desired) = activation::desired(state)?;
                let stopped = stopped::load(state)?;
                for info in &mut infos {
                    info.stopped = stopped.get(&info.service).cloned();
                    if info.stopped.is_some() {
                        continue;
                    }
                    if let Some((spec, _)) = desired.get(&info.service) {
                        info.health = Some(match health::probe(&engine, spec).await {
                            Ok(()) => "healthy".into(),
                            Err(e) => format!("{e:#}"),
                        });
                    }
                }
                Ok(infos)
            })?;
            out.emit(&infos, |infos| {
                let mut s = String::from("SERVICE    STATE     IMAGE             HEALTH");
                for i in infos {
                    s.push_str(&format!(
                        "\n{:<10} {:<9} {:<17} {}",
                        i.service,
                        i.state,
                        i.image,
                        match &i.stopped {
                            Some(stop) => format!("stopped by {} at {}", stop.by, stop.at),
                            None => i.health.clone().unwrap_or_else(|| "-".into()),
                        }
                    ));
                }
                if infos.is_empty() {
                    s = "no service containers; `pic activate` starts those of the current generation".into();
                }
                s
            });
        }
        ContainersCommand::Start { service, docker } => {
            // Started by an activation: files that changed while it was stopped are taken.
            for service in services_named(docker, service)? {
                stopped::clear(state, &service)?;
            }
            if !activate(state, docker, START_HEALTH_TIMEOUT, out)? {
                anyhow::bail!("not every service is healthy after the start");
            }
        }
        ContainersCommand::Stop { service, docker } => {
            let user = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "root".into());
            let by = format!("{user} (command line)");
            for service in services_named(docker, service)? {
                stopped::record(state, &service, &by)?;
            }
            each(docker, service, out, "stopped (until started again)", |e, n| async move { e.stop(&n).await })?
        }
        ContainersCommand::Restart { service, docker } => {
            for service in services_named(docker, service)? {
                stopped::clear(state, &service)?;
            }
            each(docker, service, out, "restarted", |e, n| async move { e.restart(&n).await })?
        }
        ContainersCommand::Remove { service, docker } => {
            each(docker, service, out, "removed", |e, n| async move { e.remove(&n).await })?;
            if service == "all" {
                block_on(async { connect(docker).await?.remove_network(docker::NETWORK).await })?;
            }
        }
        ContainersCommand::Logs { service, tail, follow, docker } => block_on(async {
            let engine = connect(docker).await?;
            let mut stream = docker::logs(&engine, &container_name(service), *tail, *follow);
            while let Some(chunk) = stream.next().await {
                print!("{}", chunk?);
            }
            Ok(())
        })?,
    }
    Ok(())
}
