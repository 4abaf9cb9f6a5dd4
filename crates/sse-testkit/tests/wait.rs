//! Tests of `wait_until` and `eventually`: both return as soon as their condition holds, and
//! both fail naming what they waited for, after one more check past the deadline.

use std::cell::Cell;
use std::time::Duration;

use sse_testkit::{eventually, wait_until};

#[test]
fn wait_until_returns_once_the_condition_holds() {
    let mut calls = 0;
    wait_until("the third call", Duration::from_secs(5), || {
        calls += 1;
        calls == 3
    });
    assert_eq!(calls, 3);
}

#[test]
#[should_panic(expected = "waiting until the moon is cheese")]
fn wait_until_panics_naming_what_it_waited_for() {
    wait_until("the moon is cheese", Duration::from_millis(30), || false);
}

#[test]
fn wait_until_checks_once_even_with_no_time_left() {
    let mut calls = 0;
    wait_until("the first call", Duration::ZERO, || {
        calls += 1;
        true
    });
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn eventually_returns_the_first_value_the_attempt_yields() {
    let calls = Cell::new(0);
    let value = eventually("the third attempt", Duration::from_secs(5), || async {
        calls.set(calls.get() + 1);
        (calls.get() == 3).then_some("third")
    })
    .await;
    assert_eq!((value, calls.get()), ("third", 3));
}

#[tokio::test]
#[should_panic(expected = "waiting until pigs fly")]
async fn eventually_panics_naming_what_it_waited_for() {
    eventually("pigs fly", Duration::from_millis(30), || async {
        None::<()>
    })
    .await;
}
