//! A CodeDeploy AppSpec (YAML or JSON) as the hooks read it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiftguard_core::release::appspec::parse_appspec;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_appspec(text);
    }
});
