//! A plugin built against `rosterflow:plugin@0.2.0` (a copy of the interface at a version the
//! host does not run), without the SDK. The host must refuse it at load, naming both versions.

wit_bindgen::generate!({
    path: "wit",
    world: "rosterflow:plugin/plugin@0.2.0",
});

use exports::rosterflow::plugin::transform::Guest;
use rosterflow::plugin::types::{Edit, Info, PluginError, Snapshot, Wants};

struct WrongVersion;

impl Guest for WrongVersion {
    fn describe() -> Info {
        Info {
            name: "wrong-version".into(),
            version: "0.2.0".into(),
            description: "built against an interface version the host does not run".into(),
            wants: Wants::empty(),
        }
    }

    fn check_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }

    fn run(_config: String, _snapshot: Snapshot) -> Result<Vec<Edit>, PluginError> {
        Ok(Vec::new())
    }
}

export!(WrongVersion);
