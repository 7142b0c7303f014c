//! The seeded mutations the bad-file property tests apply: byte edits (flips, insertions,
//! deletions, truncation), JSON edits (a value replaced by one of another kind or range, a key
//! removed or added) and edits that keep a safetensors file valid but hold the wrong tensors
//! (missing, extra, reshaped, retyped, renamed).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};

/// A seeded runner: the same cases on every run, no failure files written.
pub(super) fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// One change to a file's bytes, at a position given as a fraction of its length.
#[derive(Clone, Debug)]
pub(super) enum Edit {
    Flip(f64, u8),
    Insert(f64, Vec<u8>),
    Delete(f64, usize),
    Truncate(f64),
}

pub(super) fn byte_edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (0.0..1.0f64, any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        (0.0..1.0f64, prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (0.0..1.0f64, 1..16usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        (0.0..1.0f64).prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

pub(super) fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for e in edits {
        let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len);
        match e {
            Edit::Flip(p, x) if !b.is_empty() => {
                let i = at(*p, b.len() - 1);
                b[i] ^= x | 1;
            }
            Edit::Insert(p, x) => {
                let i = at(*p, b.len());
                b.splice(i..i, x.iter().copied());
            }
            Edit::Delete(p, n) => {
                let i = at(*p, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Edit::Truncate(p) => b.truncate(at(*p, b.len())),
            _ => {}
        }
    }
    b
}

/// One change to a JSON document: the `pick`-th value (depth first) replaced by a value of
/// another kind or range, removed from its object, or given an unknown sibling key.
#[derive(Clone, Debug)]
pub(super) struct JsonEdit {
    pick: usize,
    kind: u8,
    with: usize,
}

pub(super) fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    prop::collection::vec(
        (any::<usize>(), 0..3u8, any::<usize>()).prop_map(|(pick, kind, with)| JsonEdit {
            pick,
            kind,
            with,
        }),
        1..3,
    )
}

pub(super) fn replacements() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(1e300),
        json!(-1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(4_294_967_296u64),
        json!(0.5),
        json!(""),
        json!("x"),
        json!("lowrank"),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
        json!([1, 2, 3]),
        json!({"kind": "blockshuffle", "n_blocks": 7}),
    ]
}

/// Every path (object keys and array indices) of `v`, depth first.
pub(super) fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

pub(super) fn apply_json(doc: &Value, edits: &[JsonEdit]) -> Value {
    let mut doc = doc.clone();
    let with = replacements();
    for e in edits {
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        if all.is_empty() {
            continue;
        }
        let path = &all[e.pick % all.len()];
        let (last, parent_path) = path.split_last().unwrap();
        let mut parent = &mut doc;
        for step in parent_path {
            parent = match step {
                Value::String(k) => &mut parent[k.as_str()],
                Value::Number(i) => &mut parent[i.as_u64().unwrap() as usize],
                _ => unreachable!(),
            };
        }
        match (e.kind, last, parent) {
            (1, Value::String(k), Value::Object(map)) => {
                map.remove(k);
            }
            (2, _, Value::Object(map)) => {
                map.insert("zz_unknown".into(), json!(1));
            }
            (_, Value::String(k), p) => p[k.as_str()] = with[e.with % with.len()].clone(),
            (_, Value::Number(i), p) => {
                p[i.as_u64().unwrap() as usize] = with[e.with % with.len()].clone()
            }
            _ => {}
        }
    }
    doc
}

/// One change to a safetensors file that keeps it a valid safetensors file: the `pick`-th
/// tensor removed, duplicated under another name, reshaped (same number of elements: flat,
/// or its dimensions reversed), stored as f64 / f16 / i32, or renamed.
#[derive(Clone, Debug)]
pub(super) struct TensorEdit {
    pick: usize,
    kind: u8,
}

pub(super) fn tensor_edits() -> impl Strategy<Value = Vec<TensorEdit>> {
    prop::collection::vec(
        (any::<usize>(), 0..7u8).prop_map(|(pick, kind)| TensorEdit { pick, kind }),
        1..3,
    )
}

pub(super) fn apply_tensors(bytes: &[u8], edits: &[TensorEdit]) -> Vec<u8> {
    use safetensors::{Dtype, SafeTensors};
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for e in edits {
        if tensors.is_empty() {
            break;
        }
        let i = e.pick % tensors.len();
        match e.kind {
            0 => {
                tensors.remove(i);
            }
            1 => {
                let mut extra = tensors[i].clone();
                extra.0.push_str(".extra");
                tensors.push(extra);
            }
            2 => {
                let n = tensors[i].2.iter().product();
                tensors[i].2 = vec![n];
            }
            3 => tensors[i].2.reverse(),
            4 if tensors[i].1 == Dtype::F32 => {
                let t = &mut tensors[i];
                t.3 = t
                    .3
                    .chunks(4)
                    .flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) as f64).to_le_bytes())
                    .collect();
                t.1 = Dtype::F64;
            }
            5 if tensors[i].1 == Dtype::F32 => {
                let t = &mut tensors[i];
                t.3 =
                    t.3.chunks(4)
                        .flat_map(|c| {
                            burn::tensor::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap()))
                                .to_le_bytes()
                        })
                        .collect();
                t.1 = Dtype::F16;
            }
            6 if tensors[i].1 == Dtype::F32 => tensors[i].1 = Dtype::I32,
            _ => tensors[i].0.push('x'),
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, meta.metadata().clone()).unwrap()
}

/// The JSON of a file: the whole file, or a safetensors file's header (and where its data
/// starts).
pub(super) fn json_part(bytes: &[u8]) -> (Value, Option<usize>) {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return (v, None);
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        Some(8 + n),
    )
}

pub(super) fn with_json_part(bytes: &[u8], json: Vec<u8>, data_start: Option<usize>) -> Vec<u8> {
    match data_start {
        None => json,
        Some(start) => {
            let mut out = (json.len() as u64).to_le_bytes().to_vec();
            out.extend(json);
            out.extend(&bytes[start..]);
            out
        }
    }
}
