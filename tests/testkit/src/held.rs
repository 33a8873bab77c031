//! Thumbnail stores that the database refuses while a test says so: the
//! worker keeps those tasks in flight, retrying, for as long as the test
//! wants (to crash or kill it with several tasks in hand).

use sqlx::PgPool;
use uuid::Uuid;

/// A trigger on `tasks` that fails every store of a COMPLETED outcome for
/// the tasks held (or for all tasks, while everything is held).
pub struct HeldStores {
    pool: PgPool,
}

impl HeldStores {
    /// Installs the trigger; nothing is held yet. The tasks table must
    /// exist (run the migrations, or start a service, first).
    pub async fn install(pool: &PgPool) -> Self {
        sqlx::raw_sql(
            "CREATE TABLE held (id uuid);
             CREATE FUNCTION hold_stores() RETURNS trigger AS $$
             BEGIN
               IF EXISTS (SELECT 1 FROM held WHERE id IS NULL OR id = NEW.id) THEN
                 RAISE EXCEPTION 'held by the test';
               END IF;
               RETURN NEW;
             END $$ LANGUAGE plpgsql;
             CREATE TRIGGER hold_stores BEFORE UPDATE ON tasks
               FOR EACH ROW WHEN (NEW.status = 'COMPLETED') EXECUTE FUNCTION hold_stores();",
        )
        .execute(pool)
        .await
        .expect("the store-holding trigger");
        Self { pool: pool.clone() }
    }

    /// Holds the stores of `task`, or of every task with `None`.
    pub async fn hold(&self, task: Option<Uuid>) {
        sqlx::query("INSERT INTO held VALUES ($1)")
            .bind(task)
            .execute(&self.pool)
            .await
            .expect("hold");
    }

    /// Lets every store through again.
    pub async fn release(&self) {
        sqlx::query("DELETE FROM held")
            .execute(&self.pool)
            .await
            .expect("release");
    }
}
