//! `ramp`: the highest rate the server sustains. Each rate of `--rates` is published for
//! `--step` and measured on its own (fresh counters and latency, server and driver CPU). A
//! step passes if nothing is missing, p99 (from the send time) is below `--max-p99`, and
//! publishing reached 95 % of the rate. A step that broke only the last rule while the driver
//! was saturated is *inconclusive*: the shortfall may be the driver's, so it says nothing
//! about the server. The first step that does not pass ends the ramp; `best` is the passing
//! step that delivered the most events per second.

use std::time::Duration;

use crate::cli::RampOptions;
use crate::fleet::StormPlan;
use crate::plan::Plan;
use crate::report::{Best, Details, Latency, Params, Report, ScenarioParams, Step, Verdict, round};
use crate::scenarios::Stage;

/// Runs the scenario.
pub(crate) async fn run(plan: Plan, options: &RampOptions) -> Report {
    let stage = Stage::open(plan, StormPlan::NONE).await;
    let mut publisher = stage.publisher();
    let whole = stage.window(publisher.published());
    let max_p99_ms = options.max_p99.as_secs_f64() * 1000.0;
    let mut steps = Vec::new();
    let mut publishing_total = Duration::ZERO;
    for &rate in &options.rates {
        let window = stage.window(publisher.published());
        let publishing = publisher.publish(rate, options.step).await;
        publishing_total += publishing;
        let measured = stage
            .measure(window, publisher.published(), publishing)
            .await;
        let (latency, from_schedule) = Latency::both(&measured.latency);
        let busy = stage.busy(&measured, Some(rate));
        let failed_on: Vec<&'static str> = [
            (measured.events.missing > 0, "missing"),
            (latency.p99 >= max_p99_ms, "p99"),
            (busy.publishing_fell_short(), "publish_rate"),
        ]
        .into_iter()
        .filter_map(|(failed, rule)| failed.then_some(rule))
        .collect();
        let load = stage.load(&measured, Some(rate));
        let verdict = match failed_on.as_slice() {
            [] => Verdict::Passed,
            ["publish_rate"] if load.driver_bound => Verdict::Inconclusive,
            _ => Verdict::Failed,
        };
        let server_cpu = load
            .server_cpu_percent
            .map_or_else(|| "?".to_owned(), |percent| percent.to_string());
        eprintln!(
            "step {rate}/s: published {}/s, delivered {}/s, missing {}, p99 {} ms, \
             server CPU {server_cpu} %, driver CPU {} %: {verdict:?}",
            measured.events.published_per_second,
            measured.events.delivered_per_second,
            measured.events.missing,
            latency.p99,
            load.driver_cpu_percent,
        );
        steps.push(Step {
            rate,
            events: measured.events,
            latency_ms: latency,
            latency_from_schedule_ms: from_schedule,
            load,
            verdict,
            failed_on,
        });
        if verdict != Verdict::Passed {
            break;
        }
    }
    let best = steps
        .iter()
        .filter(|step| step.verdict == Verdict::Passed)
        .max_by(|a, b| {
            a.events
                .delivered_per_second
                .total_cmp(&b.events.delivered_per_second)
        })
        .map(|step| Best {
            rate: step.rate,
            published_per_second: step.events.published_per_second,
            delivered_per_second: step.events.delivered_per_second,
            p99_ms: step.latency_ms.p99,
        });
    let whole = stage
        .measure(whole, publisher.published(), publishing_total)
        .await;
    let params = Params {
        rate: None,
        duration_s: None,
        scenario: ScenarioParams::Ramp {
            rates: options.rates.clone(),
            step_s: round(options.step.as_secs_f64(), 3),
            max_p99_ms,
        },
        ..stage.plan.params.clone()
    };
    stage
        .finish("ramp", params, whole, Details::Ramp { steps, best })
        .await
}
