//! The same tensors give the same file: safetensors writers (safetensors' `serialize`,
//! burn-store) take the header's `__metadata__` as a `HashMap`, whose order changes from one
//! process to the next, so two runs that computed identical weights wrote different bytes.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `bytes`, a safetensors file, with its header's `__metadata__` in sorted key order (the
/// header keeps its length and the data its place). Bytes that are not a safetensors file are
/// returned as they are.
pub fn canonical_safetensors(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    else {
        return bytes;
    };
    let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(8)) else {
        return bytes;
    };
    let Some(header) = bytes.get(8..end) else {
        return bytes;
    };
    let Ok(mut entries) = serde_json::from_slice::<Map<String, Value>>(header) else {
        return bytes;
    };
    let mut parts = Vec::with_capacity(entries.len());
    if let Some(meta) = entries.remove("__metadata__") {
        let Ok(sorted) = serde_json::from_value::<BTreeMap<String, String>>(meta) else {
            return bytes;
        };
        parts.push(format!("\"__metadata__\":{}", json(&sorted)));
    }
    parts.extend(
        entries
            .iter()
            .map(|(k, v)| format!("{}:{}", json(k), json(v))),
    );
    let text = format!("{{{}}}", parts.join(","));
    let header_len = end - 8;
    if text.len() > header_len {
        return bytes;
    }
    // safetensors pads its header with spaces to keep the data aligned.
    let padded = format!("{text:<header_len$}");
    bytes[8..end].copy_from_slice(padded.as_bytes());
    bytes
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn file(meta_order: &[(&str, &str)]) -> Vec<u8> {
        // A header written with the metadata in the given order, as a HashMap iteration may.
        let meta: Vec<String> = meta_order
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{v}\""))
            .collect();
        let header = format!(
            "{{\"__metadata__\":{{{}}},\"w\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}}}",
            meta.join(",")
        );
        let padded = format!("{header:<width$}", width = header.len().div_ceil(8) * 8);
        let mut bytes = (padded.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(padded.as_bytes());
        bytes.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
        bytes
    }

    #[test]
    fn metadata_order_no_longer_changes_the_bytes_and_the_file_still_reads() {
        let a = canonical_safetensors(file(&[("steps", "3"), ("config", "x")]));
        let b = canonical_safetensors(file(&[("config", "x"), ("steps", "3")]));
        assert_eq!(a, b);
        assert_ne!(
            file(&[("steps", "3"), ("config", "x")]),
            file(&[("config", "x"), ("steps", "3")])
        );
        let (_, meta) = safetensors::SafeTensors::read_metadata(&a).unwrap();
        let want = HashMap::from([("steps".into(), "3".into()), ("config".into(), "x".into())]);
        assert_eq!(meta.metadata().as_ref(), Some(&want));
        let st = safetensors::SafeTensors::deserialize(&a).unwrap();
        assert_eq!(
            st.tensor("w").unwrap().data(),
            &[0, 0, 128, 63, 0, 0, 0, 64]
        );
        // Not a safetensors file: unchanged.
        assert_eq!(canonical_safetensors(b"short".to_vec()), b"short".to_vec());
    }
}
