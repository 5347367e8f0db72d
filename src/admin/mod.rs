//! The admin listener.

mod settings;

pub use settings::AdminSettings;
