//! What the device is doing, told to the person in front of it: the data partition checked, the
//! service images, the services starting, and the address to open. One `Status`, computed from
//! what was observed, is shown three ways: on the console (the login greeting, `greeting`), on
//! the front door's progress page (`page`), and in `GET /api/setup/status`.

pub mod greeting;
pub mod network;
pub mod page;
pub mod storage;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

/// How long a device may be without an address before the console says so.
pub const NO_ADDRESS_AFTER: Duration = Duration::from_secs(30);

/// Something that stops the cell, or will: a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Steps are under way; the front door shows the progress page.
    Starting,
    /// The cell serves: the wizard before setup, the web UI after it.
    Ready,
    /// A problem (`problem`) keeps the cell from starting; nothing was started.
    Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Active,
    Done,
    Failed,
}

/// One step of the start, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Step {
    #[schema(value_type = String)]
    pub id: &'static str,
    #[schema(value_type = String)]
    pub title: &'static str,
    pub state: StepState,
    pub detail: String,
    /// How far a step with a size has come.
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

/// The device's network: its addresses, and what to check when it has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Network {
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<Ipv4Addr>,
    pub message: Option<String>,
}

/// What the device is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub phase: Phase,
    pub steps: Vec<Step>,
    pub problem: Option<Problem>,
    pub network: Network,
    /// Whether setup is done (the greeting and the page point to the wizard until it is).
    pub setup_complete: bool,
    /// After setup, the SHA-256 fingerprint of the cell CA, which signs the certificate of the
    /// web UI at the addresses: what a person compares before trusting it.
    pub ca_fingerprint: Option<String>,
    /// The data partition is more than 90 % full (what to do about it).
    pub space_warning: Option<String>,
}

/// What the Docker engine showed, when this server runs the service containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// It does not answer yet (it is starting, or away), with what connecting said.
    Waiting(String),
    Up {
        images: Progress,
        missing: Vec<String>,
        services: Progress,
        activated: bool,
    },
}

/// Everything the status is computed from; gathered by `pic serve` (`serve::device`).
#[derive(Debug, Clone)]
pub struct Observed {
    pub storage: Option<storage::Storage>,
    pub problem: Option<Problem>,
    /// The problem was there when `pic serve` started, so nothing was started.
    pub blocked: bool,
    pub engine: Option<Engine>,
    pub setup_complete: bool,
    pub ca_fingerprint: Option<String>,
    pub addresses: Vec<Ipv4Addr>,
    pub uptime: Duration,
}

impl Status {
    /// The status before anything was observed.
    pub fn initial() -> Status {
        Status::from(&Observed {
            storage: None,
            problem: None,
            blocked: false,
            engine: Some(Engine::Waiting("not checked yet".into())),
            setup_complete: false,
            ca_fingerprint: None,
            addresses: Vec::new(),
            uptime: Duration::ZERO,
        })
    }

    pub fn ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The URLs a person on the network opens.
    pub fn urls(&self) -> Vec<String> {
        // The wizard is served over plain HTTP (there is no CA yet); afterwards HTTP only redirects.
        let scheme = if self.setup_complete { "https" } else { "http" };
        self.network.addresses.iter().map(|a| format!("{scheme}://{a}/")).collect()
    }
}

impl From<&Observed> for Status {
    fn from(seen: &Observed) -> Status {
        let mut steps = Vec::new();
        let (state, detail) = match (&seen.problem, &seen.storage) {
            (Some(problem), _) => (StepState::Failed, problem.message.clone()),
            (None, Some(s)) => {
                (StepState::Done, format!("{}, {} free", storage::gb(s.data_bytes), storage::gb(s.free_bytes)))
            }
            (None, None) => (StepState::Active, "checking its size".into()),
        };
        steps.push(Step { id: "storage", title: "Data partition", state, detail, progress: None });
        match &seen.engine {
            _ if seen.blocked => {}
            None => {}
            Some(Engine::Waiting(_)) => {
                steps.push(Step {
                    id: "images",
                    title: "Service images",
                    state: StepState::Active,
                    detail: "waiting for Docker to start".into(),
                    progress: None,
                });
                steps.push(Step {
                    id: "services",
                    title: "Services",
                    state: StepState::Pending,
                    detail: String::new(),
                    progress: None,
                });
            }
            Some(Engine::Up { images, missing, services, activated }) => {
                let (state, detail) = if missing.is_empty() {
                    (StepState::Done, format!("{} of {} ready", images.done, images.total))
                } else {
                    (StepState::Failed, format!("missing: {} (pic images build)", missing.join(", ")))
                };
                steps.push(Step { id: "images", title: "Service images", state, detail, progress: Some(*images) });
                let state = if *activated { StepState::Done } else { StepState::Active };
                let detail = match (seen.setup_complete, activated) {
                    (false, false) => "starting the setup page".to_owned(),
                    (false, true) => "the cell's services start after setup".to_owned(),
                    (true, _) => format!("{} of {} running", services.done, services.total),
                };
                let progress = seen.setup_complete.then_some(*services);
                steps.push(Step { id: "services", title: "Services", state, detail, progress });
            }
        }
        let phase = if seen.blocked {
            Phase::Blocked
        } else if steps.iter().all(|s| matches!(s.state, StepState::Done | StepState::Failed)) {
            Phase::Ready
        } else {
            Phase::Starting
        };
        let message = (seen.addresses.is_empty() && seen.uptime >= NO_ADDRESS_AFTER).then(|| {
            format!(
                "No network address after {} s: check the network cable and that the network has a \
                 DHCP server. Still trying.",
                seen.uptime.as_secs()
            )
        });
        Status {
            phase,
            steps,
            problem: seen.problem.clone(),
            network: Network { addresses: seen.addresses.clone(), message },
            setup_complete: seen.setup_complete,
            ca_fingerprint: seen.ca_fingerprint.clone().filter(|_| seen.setup_complete),
            space_warning: seen.storage.as_ref().and_then(storage::nearly_full).filter(|_| seen.problem.is_none()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Moments of a device's life, for the snapshots of the greeting and the page.
    pub fn moments() -> Vec<(&'static str, Observed)> {
        let storage =
            storage::Storage { data_bytes: 7_300_000_000, free_bytes: 6_500_000_000, disk_bytes: Some(8 << 30) };
        let base = Observed {
            storage: Some(storage),
            problem: None,
            blocked: false,
            engine: Some(Engine::Waiting("connecting: no such file".into())),
            setup_complete: false,
            ca_fingerprint: Some(
                "3F:9A:21:07:C4:5B:88:E0:12:6D:AF:90:3C:71:B2:4E:5A:0D:E9:66:18:C3:F7:2B:94:40:8E:D1:6A:05:BC:73"
                    .into(),
            ),
            addresses: vec![Ipv4Addr::new(192, 168, 1, 20)],
            uptime: Duration::from_secs(25),
        };
        let with_missing = |services: usize, activated: bool, missing: Vec<String>| Engine::Up {
            images: Progress { done: 8 - missing.len(), total: 8 },
            missing,
            services: Progress { done: services, total: 8 },
            activated,
        };
        let up = |services: usize, activated: bool| with_missing(services, activated, Vec::new());
        let small = storage::Storage { data_bytes: 700_000_000, free_bytes: 9_000_000, disk_bytes: Some(911_000_000) };
        vec![
            ("first boot, waiting for Docker", base.clone()),
            ("first boot, starting the setup page", Observed { engine: Some(up(0, false)), ..base.clone() }),
            ("first boot, ready for setup", Observed { engine: Some(up(1, true)), ..base.clone() }),
            ("after setup, starting", Observed { engine: Some(up(3, false)), setup_complete: true, ..base.clone() }),
            ("after setup, ready", Observed { engine: Some(up(8, true)), setup_complete: true, ..base.clone() }),
            (
                "after setup, the data partition nearly full",
                Observed {
                    engine: Some(up(8, true)),
                    setup_complete: true,
                    storage: Some(storage::Storage {
                        data_bytes: 7_300_000_000,
                        free_bytes: 365_000_000,
                        disk_bytes: Some(8 << 30),
                    }),
                    ..base.clone()
                },
            ),
            (
                "a disk too small, no address yet",
                Observed {
                    storage: Some(small),
                    problem: storage::judge(&small, &storage::LIMITS),
                    blocked: true,
                    addresses: Vec::new(),
                    uptime: Duration::from_secs(31),
                    ..base.clone()
                },
            ),
            (
                "two addresses, images missing",
                Observed {
                    engine: Some(with_missing(1, true, vec!["pic/mail:latest".into()])),
                    addresses: vec![Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(192, 168, 1, 20)],
                    ..base
                },
            ),
        ]
    }

    #[test]
    fn each_moment_has_its_phase() {
        let phases: Vec<String> =
            moments().iter().map(|(what, seen)| format!("{what}: {:?}", Status::from(seen).phase)).collect();
        insta::assert_snapshot!(phases.join("\n"));
    }

    #[test]
    fn the_status_as_the_api_gives_it() {
        let (_, seen) = &moments()[3];
        insta::assert_json_snapshot!(Status::from(seen));
    }
}
