//! A revision file: the Python parser, the operations it finds, the phase decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiftguard_core::schema::alembic::parse_revision_file;
use shiftguard_core::schema::phase::{classify_all, decide};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = parse_revision_file(source) {
        let _ = classify_all(&file.operations);
        let _ = decide(&file);
    }
});
