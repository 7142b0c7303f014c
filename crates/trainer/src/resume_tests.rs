//! Tests of resuming a run from its folder alone: the data folder the run recorded, a moved copy
//! of it (checked to be the same data, then the run's), and other data refused naming what
//! differs, with nothing written.

use std::fs;
use std::path::Path;

use crate::parse_tests::copy_dir;
use crate::run::train::{self, Quiet, RunOptions, Start};
use crate::train_tests::{err_text, losses, prepared, rng_lock, scratch, small_run};
use corpus::{self as data, PrepareConfig, TokenizerSource};

type TB = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

fn resume(out: &Path, data: Option<&Path>) -> Result<train::Summary, crate::TrainError> {
    let options = RunOptions {
        data: data.map(Path::to_path_buf),
        stop_at_step: Some(4),
        ..RunOptions::default()
    };
    Start::resume(out)
        .and_then(|start| train::train::<TB>(start, out, options, &Default::default(), &mut Quiet))
}

#[test]
fn a_run_resumes_from_its_folder_or_a_moved_copy_of_its_data_and_refuses_other_data() {
    let _rng = rng_lock();
    let dir = scratch("resume-data");
    let data = prepared(&dir);
    let config = small_run(&data, 6);
    let out = dir.join("run");
    let stop = RunOptions {
        stop_at_step: Some(2),
        ..RunOptions::default()
    };
    let device = Default::default();
    train::train::<TB>(Start::Fresh(config), &out, stop, &device, &mut Quiet).unwrap();
    let saved = train::read_run_config(&out).unwrap();
    let record = saved
        .data_record
        .clone()
        .expect("a fresh run records its data");
    assert_eq!(record.vocab_size, 320);

    // Other data (another tokenizer) is refused, naming the difference; nothing is written.
    let text = dir.join("text");
    let mut other = PrepareConfig::new(vec![text], dir.join("other"));
    other.tokenizer = TokenizerSource::Train { vocab_size: 300 };
    data::prepare(&other).unwrap();
    let config_before = fs::read(out.join("config.json")).unwrap();
    let metrics_before = fs::read(out.join("metrics.jsonl")).unwrap();
    let e = err_text(resume(&out, Some(&dir.join("other"))));
    assert!(e.contains("not the data the run trained on"), "{e}");
    assert!(e.contains("vocabulary size: 300, the run's 320"), "{e}");
    assert_eq!(fs::read(out.join("config.json")).unwrap(), config_before);
    assert_eq!(fs::read(out.join("metrics.jsonl")).unwrap(), metrics_before);

    // Its own folder, by default.
    assert_eq!(resume(&out, None).unwrap().steps, 4);

    // Moved: the recorded folder is gone, the run says so; given the new place it goes on and
    // keeps it.
    let moved = dir.join("moved");
    copy_dir(&data, &moved);
    fs::remove_dir_all(&data).unwrap();
    let e = err_text(resume(&out, None));
    assert!(e.contains("the run's data folder"), "{e}");
    assert!(e.contains("`data`"), "{e}");
    let options = RunOptions {
        data: Some(moved.clone()),
        ..RunOptions::default()
    };
    let s = Start::resume(&out)
        .and_then(|start| train::train::<TB>(start, &out, options, &device, &mut Quiet))
        .unwrap();
    assert_eq!((s.steps, s.data.as_path()), (6, moved.as_path()));
    let resaved = train::read_run_config(&out).unwrap();
    assert_eq!(resaved.data, moved);
    assert_eq!(resaved.data_record, Some(record));
    assert_eq!(losses(&out).len(), 6);
}
