//! `shiftguard.toml`, parsed and validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiftguard_core::config::ProjectConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ProjectConfig::parse(text);
    }
});
