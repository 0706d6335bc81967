//! The PIC builder: one declarative cell config in, immutable content-addressed generations out.
//!
//! `config` reads and validates the cell config; `render` turns it into one bundle of files per
//! service; `store` keeps bundles under their content hash; `generation` and `state` record which
//! bundles make up each generation and which one is current. Nothing here talks to Docker, HTTP or
//! WireGuard sockets: rendering is a pure function of the config, the templates and public keys.

pub mod apps;
pub mod backup;
pub mod ca;
pub mod command;
pub mod config;
pub mod credentials;
pub mod diff;
pub mod disk;
pub mod error;
pub mod exits;
pub mod fault;
pub mod fsutil;
pub mod generation;
pub mod hashing;
pub mod images;
pub mod links;
pub mod peers;
pub mod render;
pub mod secrets;
pub mod state;
pub mod store;
pub mod summary;
pub mod templates;
pub mod update;

pub use error::Error;
pub use state::{GcLimits, State};
