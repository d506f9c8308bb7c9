//! The pairing QR code an unpaired bridge shows: a real QR code, as a PNG,
//! encoding a payload shaped like WhatsApp's linked-device QR
//! (`ref,noise key,identity key,adv secret`). The keys belong to the bridge;
//! the ref belongs to one pairing attempt and is replaced once it is older
//! than [`REF_TTL`] (WhatsApp rotates its refs about this often; the
//! provider's reference says nothing about expiry), so two calls close
//! together show the same code and a late one a new code.

use std::time::{Duration, Instant};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use qrcode::{Color, QrCode};

/// How long one pairing ref is shown before `GET .../qr` issues a new one.
pub(crate) const REF_TTL: Duration = Duration::from_secs(20);

/// Pixels per QR module in the PNG (a 4-module quiet zone surrounds the code).
const SCALE: usize = 8;
const QUIET_MODULES: usize = 4;

/// One bridge's pairing material and its current attempt.
#[derive(Debug, Clone)]
pub(crate) struct QrPairing {
    /// The bridge's own keys, fixed for its life (`noise,identity,adv`).
    keys: String,
    /// The current attempt's payload and when its ref was issued.
    current: Option<(String, Instant)>,
    /// Served instead of the real QR (a provider answering with some other
    /// image), set from tests through the handle.
    pub image_override: Option<Vec<u8>>,
}

impl QrPairing {
    pub fn new() -> Self {
        let key = || STANDARD.encode(rand::random::<[u8; 32]>());
        Self {
            keys: format!("{},{},{}", key(), key(), key()),
            current: None,
            image_override: None,
        }
    }

    /// The payload to show at `now`: the current attempt's, or a new attempt
    /// when there is none or its ref has expired.
    pub fn payload_at(&mut self, now: Instant) -> String {
        match &self.current {
            Some((payload, issued)) if now.saturating_duration_since(*issued) < REF_TTL => {
                payload.clone()
            }
            _ => {
                let payload = format!("2@{},{}", new_ref(), self.keys);
                self.current = Some((payload.clone(), now));
                payload
            }
        }
    }

    /// The payload last shown, while its attempt lasts (for tests' assertions).
    pub fn current(&self) -> Option<&str> {
        self.current.as_ref().map(|(payload, _)| payload.as_str())
    }

    /// The attempt ends (the bridge paired, or its session changed otherwise).
    pub fn end_attempt(&mut self) {
        self.current = None;
    }
}

/// A fresh pairing ref: 48 random bytes, base64 (the length of WhatsApp's).
fn new_ref() -> String {
    let bytes: [u8; 48] = rand::random();
    STANDARD.encode(bytes)
}

/// Encoding a payload failed (too long for any QR version, or the PNG encoder refused).
#[derive(Debug, thiserror::Error)]
pub(crate) enum QrImageError {
    #[error("the payload does not fit a QR code: {0}")]
    Qr(#[from] qrcode::types::QrError),
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

/// `payload` as a QR code in an 8-bit greyscale PNG, dark modules black on white.
pub(crate) fn png(payload: &str) -> Result<Vec<u8>, QrImageError> {
    let code = QrCode::new(payload.as_bytes())?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_MODULES) * SCALE;
    let mut pixels = vec![0xff_u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_MODULES, i / modules + QUIET_MODULES);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let side = u32::try_from(side).map_err(|_| qrcode::types::QrError::DataTooLong)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_is_kept_while_fresh_and_replaced_once_expired() {
        let mut qr = QrPairing::new();
        let start = Instant::now();
        let first = qr.payload_at(start);
        assert_eq!(qr.payload_at(start + REF_TTL / 2), first);
        let later = qr.payload_at(start + REF_TTL);
        assert_ne!(later, first, "an expired ref is replaced");
        let keys = |p: &str| p.split_once(',').map(|(_, k)| k.to_owned());
        assert_eq!(keys(&later), keys(&first), "the bridge's keys stay");
        assert_eq!(qr.current(), Some(later.as_str()));
        qr.end_attempt();
        assert_eq!(qr.current(), None);
    }

    #[test]
    fn two_bridges_show_different_payloads() {
        let now = Instant::now();
        assert_ne!(
            QrPairing::new().payload_at(now),
            QrPairing::new().payload_at(now)
        );
    }

    #[test]
    fn the_png_is_a_greyscale_image_of_whole_modules_with_a_quiet_zone() {
        let payload = QrPairing::new().payload_at(Instant::now());
        let bytes = png(&payload).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        let modules = QrCode::new(payload.as_bytes()).unwrap().width();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(
            info.width as usize,
            (modules + 2 * QUIET_MODULES) * SCALE,
            "{modules} modules plus the quiet zone, {SCALE} px each"
        );
        assert_eq!(info.width, info.height);
    }
}
