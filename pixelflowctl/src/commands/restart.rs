//! `pixelflowctl restart`: restart through the API, return once healthy.

use std::time::{Duration, Instant};

use crate::compose::Project;
use crate::docker::Engine;
use crate::printer::Printer;
use crate::{health, stack};

pub async fn run(
    engine: &Engine,
    project: &Project,
    services: &[String],
    timeout: Duration,
    printer: &Printer,
) -> anyhow::Result<()> {
    for name in services {
        let container = stack::container_name(&project.name, name);
        let started = Instant::now();
        let bar = printer.spinner(format!("{name}: restarting"));
        let result = async {
            engine.restart(&container, 10).await?;
            health::wait(engine, name, &container, timeout).await
        }
        .await;
        bar.finish_and_clear();
        result?;
        printer.out(format!(
            "{name} restarted and healthy in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}
