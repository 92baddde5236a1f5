use super::*;

fn at(days_ago: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    Some(now() - chrono::Duration::days(days_ago) - chrono::Duration::minutes(1))
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-12-03T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn session(id: &str, days_ago: i64) -> Facts {
    Facts {
        id: id.into(),
        ended_at: at(days_ago),
        live: true,
        vod: true,
        masters: true,
        ..Facts::default()
    }
}

fn rules(live: Option<u32>, vod: Option<u32>, masters: Option<u32>) -> RetentionConfig {
    RetentionConfig {
        live_days: live,
        vod_days: vod,
        masters_days: masters,
        every_minutes: None,
    }
}

#[test]
fn each_part_goes_at_its_age() {
    let r = rules(Some(2), Some(30), Some(365));
    let s = [
        session("fresh", 1),
        session("week", 7),
        session("quarter", 90),
        session("years", 800),
    ];
    let p = plan(&r, now(), &s);
    assert_eq!(
        p,
        [
            ("week".to_string(), vec![Part::Live]),
            ("quarter".to_string(), vec![Part::Vod]),
            ("years".to_string(), vec![Part::Vod, Part::Masters]),
        ]
    );
}

#[test]
fn masters_stay_without_a_rule_that_names_them() {
    let r = rules(Some(0), Some(0), None);
    let p = plan(&r, now(), &[session("old", 5000)]);
    assert_eq!(p, [("old".to_string(), vec![Part::Vod])]);
    assert!(plan(&RetentionConfig::default(), now(), &[session("old", 5000)]).is_empty());
}

#[test]
fn pinned_running_and_unended_sessions_are_kept() {
    let r = rules(Some(0), Some(0), Some(0));
    let mut pinned = session("pinned", 100);
    pinned.pinned = true;
    let mut running = session("running", 100);
    running.running = true;
    let mut unended = session("unended", 100);
    unended.ended_at = None;
    assert!(plan(&r, now(), &[pinned, running, unended]).is_empty());
}

#[test]
fn what_is_gone_is_not_due_again() {
    let r = rules(Some(1), Some(30), None);
    let mut s = session("s", 10);
    s.live = false;
    assert!(plan(&r, now(), &[s.clone()]).is_empty());
    s.vod = false;
    s.ended_at = at(100);
    assert!(plan(&r, now(), &[s]).is_empty());
}
