//! Bound parameters as a person reads them: in approval requests (an approver decides
//! one execution with these values) and in audit records. Text-format values are shown
//! as sent; binary ones are decoded for the common types and shown as hex otherwise.
//! The mask plan's detectors apply, as to result values.

use pgwire::messages::extendedquery::Bind;

use crate::mask::MaskPlan;

/// Longest rendering of one parameter.
const MAX_PARAM_CHARS: usize = 256;

/// Each parameter of `bind` (NULL as `None`), given the statement's parameter types
/// where known (0 or missing: unknown).
pub fn render(bind: &Bind, types: &[u32], masks: &MaskPlan) -> Vec<Option<String>> {
    bind.parameters
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let value = value.as_ref()?;
            let format = match bind.parameter_format_codes.as_slice() {
                [] => 0,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(0),
            };
            let text = if format == 0 {
                String::from_utf8_lossy(value).into_owned()
            } else {
                binary(value, types.get(i).copied().unwrap_or(0))
            };
            let text = masks.detect(&text).unwrap_or(text);
            Some(cut(text))
        })
        .collect()
}

fn cut(mut text: String) -> String {
    if text.chars().count() > MAX_PARAM_CHARS {
        text = text.chars().take(MAX_PARAM_CHARS).collect::<String>() + "…";
    }
    text
}

/// A binary-format value of type `oid`, as text.
fn binary(value: &[u8], oid: u32) -> String {
    let int = |bytes: &[u8]| -> Option<i64> {
        Some(match bytes.len() {
            2 => i64::from(i16::from_be_bytes(bytes.try_into().ok()?)),
            4 => i64::from(i32::from_be_bytes(bytes.try_into().ok()?)),
            8 => i64::from_be_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    };
    let decoded = match oid {
        16 => value.first().map(|b| if *b != 0 { "true".to_string() } else { "false".to_string() }),
        20 | 21 | 23 | 26 => int(value).map(|v| v.to_string()),
        700 => value.try_into().ok().map(|b| f32::from_be_bytes(b).to_string()),
        701 => value.try_into().ok().map(|b| f64::from_be_bytes(b).to_string()),
        18 | 19 | 25 | 1042 | 1043 | 114 => std::str::from_utf8(value).ok().map(str::to_string),
        3802 => value.split_first().and_then(|(_, json)| std::str::from_utf8(json).ok()).map(str::to_string),
        2950 if value.len() == 16 => {
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            hex.get(..8)
                .zip(hex.get(8..12))
                .zip(hex.get(12..16))
                .zip(hex.get(16..20))
                .zip(hex.get(20..))
                .map(|((((a, b), c), d), e)| format!("{a}-{b}-{c}-{d}-{e}"))
        }
        _ => None,
    };
    decoded.unwrap_or_else(|| {
        let hex: String = value.iter().take(MAX_PARAM_CHARS / 2).map(|b| format!("{b:02x}")).collect();
        format!("\\x{hex}")
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pgwire::messages::extendedquery::Bind;

    use super::render;
    use crate::mask::{Detector, MaskPlan};

    #[test]
    fn text_and_binary_parameters_render_readably_and_detectors_apply() {
        let bind = Bind::new(
            None,
            None,
            vec![0, 1, 1, 1],
            vec![
                Some(Bytes::from_static(b"write to ada@example.com")),
                Some(Bytes::from_static(&[0, 0, 0, 42])),
                None,
                Some(Bytes::from_static(&[1, 2, 3])),
            ],
            vec![],
        );
        let masks = MaskPlan::new(vec![], vec![Detector::Email]);
        let shown = render(&bind, &[25, 23, 23, 17], &masks);
        assert_eq!(
            shown,
            vec![
                Some("write to a***@example.com".to_string()),
                Some("42".to_string()),
                None,
                Some("\\x010203".to_string())
            ]
        );
    }
}
