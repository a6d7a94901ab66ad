//! The sample app against PostgreSQL after the expand: it writes both representations, reads the
//! new one only behind its flag, and falls back to the old one for rows not backfilled yet.

use sample_app::{Request, Settings, handle};
use sqlx::postgres::PgPoolOptions;

use crate::support::example::*;
use crate::support::{Kind, TestDatabase, alembic, example_project};

fn settings(read_display_name: &str) -> Settings {
    Settings::from_lookup(|name| match name {
        "READ_DISPLAY_NAME" => Some(read_display_name.to_owned()),
        "SHIFTGUARD_SCHEMA_REVISION" => Some(ADD_DISPLAY_NAME.to_owned()),
        _ => None,
    })
}

#[tokio::test]
async fn the_sample_app_dual_writes_and_reads_the_new_column_only_behind_its_flag() {
    let db = TestDatabase::create(Kind::Postgres).await;
    alembic(
        &example_project(),
        Some(&db.sqlalchemy_url()),
        &["upgrade", ADD_DISPLAY_NAME],
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url())
        .await
        .expect("connect");
    let off = settings("");
    let on = settings("true");
    let request =
        |json: serde_json::Value| -> Request { serde_json::from_value(json).expect("request") };

    let created = handle(
        &pool,
        &off,
        request(serde_json::json!({"action": "create", "email": "ada@example.com", "name": "Ada"})),
    )
    .await
    .expect("create");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM users WHERE id = {id} AND full_name = 'Ada' AND display_name = 'Ada'"
        ))
        .await,
        1,
        "both columns written"
    );
    // A row an old version wrote: only full_name.
    db.execute("INSERT INTO users (email, full_name) VALUES ('old@example.com', 'Old Writer')")
        .await;
    let old = db
        .scalar("SELECT id::bigint FROM users WHERE email = 'old@example.com'")
        .await;
    // The backfill has not run; a name diverges only in the new column.
    db.execute(&format!(
        "UPDATE users SET display_name = 'Ada L.' WHERE id = {id}"
    ))
    .await;

    let get = |id: i64| request(serde_json::json!({"action": "get", "id": id}));
    assert_eq!(
        handle(&pool, &off, get(id)).await.expect("get")["name"],
        "Ada"
    );
    assert_eq!(
        handle(&pool, &on, get(id)).await.expect("get")["name"],
        "Ada L."
    );
    assert_eq!(
        handle(&pool, &on, get(old)).await.expect("get")["name"],
        "Old Writer",
        "falls back to the old column for rows not backfilled"
    );
    assert_eq!(
        handle(&pool, &on, get(999_999)).await.expect("get")["error"],
        "not found"
    );

    handle(
        &pool,
        &off,
        request(serde_json::json!({"action": "rename", "id": old, "name": "New Name"})),
    )
    .await
    .expect("rename");
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM users WHERE id = {old} AND full_name = 'New Name' AND display_name = 'New Name'"
        ))
        .await,
        1
    );
    let ping = handle(&pool, &off, request(serde_json::json!({"action": "ping"})))
        .await
        .expect("ping");
    assert_eq!(ping["schema_revision"], ADD_DISPLAY_NAME);
    pool.close().await;
    db.drop_database().await;
}
