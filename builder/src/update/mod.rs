//! Updates of a flashed device: versions, signed bundles (`bundle`), the device's A/B slots and
//! boot entries (`slots`), and writing a bundle into the inactive slot (`apply`).

pub mod apply;
pub mod bundle;
pub mod slots;
mod version;

pub use version::Version;
