//! Checks of a job body before it is queued: what `parse` keeps and refuses.

use super::*;
use serde_json::json;

/// A data folder with one ended private session, and an import folder.
struct Fixture {
    root: PathBuf,
    jobs: Jobs,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let root =
            std::env::temp_dir().join(format!("studiocast-jobparse-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let session = root.join("data/sessions/s1");
        std::fs::create_dir_all(&session).unwrap();
        std::fs::create_dir_all(root.join("import")).unwrap();
        std::fs::write(session.join("master.wav"), b"RIFF").unwrap();
        std::fs::write(
            session.join("session.json"),
            json!({"state": "ended", "visibility": "private"}).to_string(),
        )
        .unwrap();
        std::fs::write(root.join("import/take.wav"), b"RIFF").unwrap();
        let store = Arc::new(Store::open(&root.join("jobs.sqlite")).unwrap());
        let config = JobsConfig {
            data_dir: root.join("data"),
            shared_dir: root.join("data"),
            import_dir: Some(root.join("import")),
            max_upload_bytes: 1 << 20,
            min_free_mb: 0,
            pipelines_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines"),
        };
        let jobs = Jobs::new(store, config, runner::Wake::default());
        Fixture { root, jobs }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn a_private_sessions_rerender_stays_private_unless_told() {
    let f = Fixture::new("vis");
    let vis = |body: serde_json::Value| f.jobs.parse(body).unwrap().1.visibility;
    // Left out, or null (the same thing in JSON), it follows the session,
    // not the preset (the lesson preset is public).
    let base = json!({"session": "s1", "input_format": "ambix"});
    assert_eq!(vis(base.clone()), Some(Visibility::Private));
    let mut null = base.clone();
    null["visibility"] = serde_json::Value::Null;
    assert_eq!(vis(null), Some(Visibility::Private));
    let mut public = base;
    public["visibility"] = json!("public");
    assert_eq!(vis(public), Some(Visibility::Public));
}

#[test]
fn fuma_is_first_order_only() {
    let f = Fixture::new("fuma");
    let body = |order: u32| json!({"path": "take.wav", "input_format": "fuma", "order": order});
    assert!(f.jobs.parse(body(1)).is_ok());
    for order in [2, 3] {
        match f.jobs.parse(body(order)) {
            Err(ControlError::BadRequest(m)) => assert!(m.contains("FuMa"), "{m}"),
            other => panic!("order {order}: {other:?}"),
        }
    }
    // Null is the default, as for every other field.
    let null = json!({"path": "take.wav", "input_format": "fuma", "preset": null});
    assert_eq!(f.jobs.parse(null).unwrap().1.preset, "lesson");
    // Other formats keep orders 1–7.
    let ambix = json!({"path": "take.wav", "input_format": "ambix", "order": 5});
    assert!(f.jobs.parse(ambix).is_ok());
}

#[test]
fn a_missing_file_is_404_and_an_unreadable_name_400() {
    let f = Fixture::new("paths");
    let job = |path: &str| f.jobs.parse(json!({"path": path, "input_format": "ambix"}));
    assert!(matches!(job("gone.wav"), Err(ControlError::NotFound(_))));
    // A name the kernel refuses (longer than NAME_MAX) is not "not found".
    let long = "a".repeat(300);
    assert!(
        matches!(job(&long), Err(ControlError::BadRequest(_))),
        "{:?}",
        job(&long)
    );
    assert!(matches!(job("a\0b"), Err(ControlError::BadRequest(_))));
}
