//! WFDB header (`.hea`) parsing: the record line, one line per signal, and comment lines, into
//! typed values; every malformed field is an error naming the file, the line and the field.

use super::WfdbError;

/// A parsed single-segment WFDB header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Record name from the record line.
    pub record_name: String,
    /// Sampling frequency in hertz (WFDB's default is 250 when absent).
    pub sample_rate_hz: f64,
    /// Samples per signal, if the header states it.
    pub n_samples: Option<usize>,
    /// Base time (`HH:MM:SS`), if given.
    pub base_time: Option<String>,
    /// Base date (`DD/MM/YYYY` or as written), if given.
    pub base_date: Option<String>,
    /// One entry per signal, in header order.
    pub signals: Vec<SignalSpec>,
    /// Comment lines without their leading `#`, in order.
    pub comments: Vec<String>,
}

/// One signal line of a WFDB header.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    /// The file holding this signal's samples, relative to the header's folder.
    pub file_name: String,
    /// Storage format (16, 212, 80, ...).
    pub format: u16,
    /// Samples per frame (`16x2`); only 1 is supported for reading.
    pub samples_per_frame: u32,
    /// Skew in frames (`16:3`).
    pub skew: u32,
    /// Bytes to skip at the start of the file (`16+24`).
    pub byte_offset: u64,
    /// ADC units per physical unit; 0 means uncalibrated.
    pub adc_gain: f64,
    /// Digital value of physical zero.
    pub baseline: i64,
    /// Physical units (`mV`, `uV`, ...).
    pub units: String,
    /// ADC resolution in bits.
    pub adc_resolution: Option<u32>,
    /// ADC zero.
    pub adc_zero: i64,
    /// Initial value (used by difference formats).
    pub initial_value: Option<i64>,
    /// 16-bit checksum of the signal's samples, if given.
    pub checksum: Option<i64>,
    /// Block size.
    pub block_size: Option<u64>,
    /// Description; for ECG this is the lead name.
    pub description: String,
}

/// WFDB's default gain for a signal line that gives none.
pub const DEFAULT_GAIN: f64 = 200.0;
/// WFDB's default sampling frequency for a record line that gives none.
pub const DEFAULT_RATE_HZ: f64 = 250.0;

struct Ctx<'a> {
    file: &'a str,
    line: usize,
}

impl Ctx<'_> {
    fn err(&self, field: &'static str, value: &str, reason: impl Into<String>) -> WfdbError {
        WfdbError::Header {
            file: self.file.to_string(),
            line: self.line,
            field,
            value: value.chars().take(80).collect(),
            reason: reason.into(),
        }
    }
}

/// Parses the text of a `.hea` file. `file` names it in errors.
pub fn parse_header(text: &str, file: &str) -> Result<Header, WfdbError> {
    let mut comments = Vec::new();
    let mut lines = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(c) = trimmed.strip_prefix('#') {
            comments.push(c.trim().to_string());
        } else if !trimmed.is_empty() {
            lines.push((idx + 1, trimmed));
        }
    }
    let Some(&(rec_line, record)) = lines.first() else {
        return Err(WfdbError::Header {
            file: file.to_string(),
            line: 0,
            field: "record line",
            value: String::new(),
            reason: "no record line (the file is empty or only comments)".into(),
        });
    };
    let ctx = Ctx {
        file,
        line: rec_line,
    };
    let fields: Vec<&str> = record.split_whitespace().collect();
    let name_field = fields[0];
    if name_field.contains('/') {
        return Err(ctx.err(
            "record name",
            name_field,
            "multi-segment records are not supported",
        ));
    }
    let n_signals_field = fields
        .get(1)
        .ok_or_else(|| ctx.err("number of signals", "", "missing"))?;
    let n_signals: usize = n_signals_field
        .parse()
        .map_err(|_| ctx.err("number of signals", n_signals_field, "not a whole number"))?;
    let sample_rate_hz = match fields.get(2) {
        None => DEFAULT_RATE_HZ,
        Some(f) => {
            let head = f.split('/').next().unwrap_or(f);
            let rate: f64 = head
                .parse()
                .map_err(|_| ctx.err("sampling frequency", f, "not a number"))?;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ctx.err("sampling frequency", f, "must be positive"));
            }
            rate
        }
    };
    let n_samples = match fields.get(3) {
        None => None,
        Some(f) => Some(
            f.parse::<usize>()
                .map_err(|_| ctx.err("number of samples", f, "not a whole number"))?,
        ),
    };
    let base_time = fields.get(4).map(|s| s.to_string());
    let base_date = fields.get(5).map(|s| s.to_string());

    let signal_lines = &lines[1..];
    if signal_lines.len() != n_signals {
        return Err(ctx.err(
            "number of signals",
            n_signals_field,
            format!(
                "record line declares {n_signals} signals but {} signal lines follow",
                signal_lines.len()
            ),
        ));
    }
    let signals = signal_lines
        .iter()
        .map(|&(line, text)| parse_signal_line(text, &Ctx { file, line }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header {
        record_name: name_field.to_string(),
        sample_rate_hz,
        n_samples,
        base_time,
        base_date,
        signals,
        comments,
    })
}

fn parse_signal_line(text: &str, ctx: &Ctx<'_>) -> Result<SignalSpec, WfdbError> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let file_name = fields[0].to_string();
    let format_field = fields
        .get(1)
        .ok_or_else(|| ctx.err("format", "", "missing"))?;
    let (format, samples_per_frame, skew, byte_offset) = parse_format(format_field, ctx)?;

    let adc_resolution = opt_num::<u32>(fields.get(3), "ADC resolution", ctx)?;
    let adc_zero = opt_num::<i64>(fields.get(4), "ADC zero", ctx)?.unwrap_or(0);
    let initial_value = opt_num::<i64>(fields.get(5), "initial value", ctx)?;
    let checksum = opt_num::<i64>(fields.get(6), "checksum", ctx)?;
    let block_size = opt_num::<u64>(fields.get(7), "block size", ctx)?;
    let description = fields.get(8..).map(|d| d.join(" ")).unwrap_or_default();

    let (adc_gain, baseline, units) = match fields.get(2) {
        None => (DEFAULT_GAIN, adc_zero, "mV".to_string()),
        Some(g) => parse_gain(g, adc_zero, ctx)?,
    };
    Ok(SignalSpec {
        file_name,
        format,
        samples_per_frame,
        skew,
        byte_offset,
        adc_gain,
        baseline,
        units,
        adc_resolution,
        adc_zero,
        initial_value,
        checksum,
        block_size,
        description,
    })
}

fn opt_num<T: std::str::FromStr>(
    field: Option<&&str>,
    name: &'static str,
    ctx: &Ctx<'_>,
) -> Result<Option<T>, WfdbError> {
    match field {
        None => Ok(None),
        Some(f) => f
            .parse::<T>()
            .map(Some)
            .map_err(|_| ctx.err(name, f, "not a valid whole number")),
    }
}

/// `format[xspf][:skew][+offset]`, in that order.
fn parse_format(field: &str, ctx: &Ctx<'_>) -> Result<(u16, u32, u32, u64), WfdbError> {
    let (rest, offset) = match field.split_once('+') {
        Some((a, b)) => (
            a,
            b.parse::<u64>()
                .map_err(|_| ctx.err("format byte offset", field, "not a whole number"))?,
        ),
        None => (field, 0),
    };
    let (rest, skew) = match rest.split_once(':') {
        Some((a, b)) => (
            a,
            b.parse::<u32>()
                .map_err(|_| ctx.err("format skew", field, "not a whole number"))?,
        ),
        None => (rest, 0),
    };
    let (fmt, spf) = match rest.split_once('x') {
        Some((a, b)) => (
            a,
            b.parse::<u32>()
                .map_err(|_| ctx.err("format samples per frame", field, "not a whole number"))?,
        ),
        None => (rest, 1),
    };
    let format = fmt
        .parse::<u16>()
        .map_err(|_| ctx.err("format", field, "not a format number"))?;
    if spf == 0 {
        return Err(ctx.err("format samples per frame", field, "must be at least 1"));
    }
    Ok((format, spf, skew, offset))
}

/// `gain[(baseline)][/units]`.
fn parse_gain(field: &str, adc_zero: i64, ctx: &Ctx<'_>) -> Result<(f64, i64, String), WfdbError> {
    let (gain_part, units) = match field.split_once('/') {
        Some((g, u)) if !u.is_empty() => (g, u.to_string()),
        Some(_) => return Err(ctx.err("units", field, "empty units after '/'")),
        None => (field, "mV".to_string()),
    };
    let (gain_str, baseline) = match gain_part.split_once('(') {
        Some((g, b)) => {
            let b = b
                .strip_suffix(')')
                .ok_or_else(|| ctx.err("baseline", field, "missing ')'"))?;
            let baseline = b
                .parse::<i64>()
                .map_err(|_| ctx.err("baseline", field, "not a whole number"))?;
            (g, baseline)
        }
        None => (gain_part, adc_zero),
    };
    let gain: f64 = gain_str
        .parse()
        .map_err(|_| ctx.err("ADC gain", field, "not a number"))?;
    if !gain.is_finite() || gain < 0.0 {
        return Err(ctx.err("ADC gain", field, "must be a finite number >= 0"));
    }
    Ok((gain, baseline, units))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ludb_header() {
        let text = "1 12 500 5000\n\
            1.dat 16 1716(6)/mV 0 0 -120 -32198 0 i\n\
            1.dat 16 1206(2)/mV 0 0 25 12402 0 ii\n\
            1.dat 16 1229(-5)/mV 0 0 145 -20936 0 iii\n\
            1.dat 16 1368(-5)/mV 0 0 47 -23456 0 avr\n\
            1.dat 16 1368(5)/mV 0 0 -132 26680 0 avl\n\
            1.dat 16 698(-1)/mV 0 0 85 -4930 0 avf\n\
            1.dat 16 1372(-1)/mV 0 0 150 -1105 0 v1\n\
            1.dat 16 1572(2)/mV 0 0 62 10564 0 v2\n\
            1.dat 16 2259(3)/mV 0 0 65 15400 0 v3\n\
            1.dat 16 2317(4)/mV 0 0 145 20455 0 v4\n\
            1.dat 16 2074(4)/mV 0 0 105 24979 0 v5\n\
            1.dat 16 1457(1)/mV 0 0 -25 7482 0 v6\n\
            #<age>: 51\n#<sex>: F\n";
        let h = parse_header(text, "1.hea").unwrap();
        assert_eq!(h.record_name, "1");
        assert_eq!(h.sample_rate_hz, 500.0);
        assert_eq!(h.n_samples, Some(5000));
        assert_eq!(h.signals.len(), 12);
        let s = &h.signals[0];
        assert_eq!((s.format, s.byte_offset, s.adc_gain), (16, 0, 1716.0));
        assert_eq!((s.baseline, s.units.as_str()), (6, "mV"));
        assert_eq!((s.initial_value, s.checksum), (Some(-120), Some(-32198)));
        assert_eq!(s.description, "i");
        assert_eq!(h.comments, vec!["<age>: 51", "<sex>: F"]);
    }

    #[test]
    fn parses_offsets_frames_and_defaults() {
        let text = "A0001 2 500/1000(0) 7500 12:33:59 12/05/2020\n\
            A0001.mat 16x1+24 1000.0(0)/mV 16 0 28 -1716 0 aVR\n\
            A0001.mat 16 100\n";
        let h = parse_header(text, "A0001.hea").unwrap();
        assert_eq!(h.base_time.as_deref(), Some("12:33:59"));
        let s = &h.signals[0];
        assert_eq!((s.format, s.samples_per_frame, s.byte_offset), (16, 1, 24));
        let s = &h.signals[1];
        assert_eq!((s.adc_gain, s.baseline, s.units.as_str()), (100.0, 0, "mV"));
        assert_eq!(s.description, "");
        let h = parse_header("r 1\nr.dat 212\n", "r.hea").unwrap();
        assert_eq!(h.sample_rate_hz, DEFAULT_RATE_HZ);
        assert_eq!(h.signals[0].adc_gain, DEFAULT_GAIN);
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let cases = [
            ("", "record line"),
            ("r x 500\n", "number of signals"),
            ("r 2 500\nr.dat 16 200\n", "number of signals"),
            ("r 1 fast\nr.dat 16\n", "sampling frequency"),
            ("r 1 500 -3\nr.dat 16\n", "number of samples"),
            ("r 1 500\nr.dat abc\n", "format"),
            ("r 1 500\nr.dat 16+x\n", "format byte offset"),
            ("r 1 500\nr.dat 16 12(3/mV\n", "baseline"),
            ("r 1 500\nr.dat 16 abc/mV\n", "ADC gain"),
            ("r 1 500\nr.dat 16 200/mV 16 zero\n", "ADC zero"),
            ("r/3 1 500\nr.dat 16\n", "record name"),
        ];
        for (text, field) in cases {
            match parse_header(text, "x.hea") {
                Err(WfdbError::Header { field: f, file, .. }) => {
                    assert_eq!(f, field, "{text:?}");
                    assert_eq!(file, "x.hea");
                }
                other => panic!("{text:?}: expected a header error, got {other:?}"),
            }
        }
        let e = parse_header("r 1 500\nr.dat 16 abc/mV\n", "x.hea").unwrap_err();
        assert!(e.to_string().contains("x.hea line 2"), "{e}");
    }
}
