//! Literal SQL as the lint and the phase inference read it: statements, data statements, the
//! table of an ALTER/CREATE INDEX, and Alembic's offline output split by revision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiftguard_core::lint::sql::{assigned_columns, data_statements, segments, statement_table};
use shiftguard_core::schema::phase::classify_sql;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let _ = classify_sql(sql);
    let _ = data_statements(sql);
    let _ = statement_table(sql);
    let _ = assigned_columns(sql);
    for segment in segments(sql) {
        // Every range must lie on character boundaries of the text it came from.
        let _ = &sql[segment.range];
    }
});
