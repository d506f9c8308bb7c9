//! Showing the provider's pairing QR code in a terminal: the PNG is decoded,
//! the QR code in it is read back to its content, and that content is drawn
//! again with half-block characters (two modules a character cell, so the
//! code keeps its proportions and fits 80 columns), light modules as blocks
//! for the usual dark-background terminal. Reading the content, rather than
//! copying pixels, means any image size, colour type or scale the provider
//! uses is drawn at one character a module, and an image that is no QR code
//! is told apart from one that merely looks wrong.

use std::io::Cursor;

use qrcode::{QrCode, render::unicode::Dense1x2};

/// Why the PNG cannot be drawn as a QR code in the terminal.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableQr {
    #[error("the image is not a readable PNG ({0})")]
    Png(#[from] png::DecodingError),
    #[error("the PNG's pixel format is not supported ({0:?})")]
    Format(png::ColorType),
    #[error("no QR code was found in the {width}×{height} image")]
    NoCode { width: u32, height: u32 },
    #[error("a QR code was found in the image but cannot be read ({0})")]
    Undecodable(rqrr::DeQRError),
    #[error("the QR code's content cannot be drawn again ({0})")]
    Redraw(qrcode::types::QrError),
}

/// The content of the QR code in `png` (the first one that reads).
pub fn read(png: &[u8]) -> Result<Vec<u8>, UnreadableQr> {
    let (width, height, grey) = greyscale(png)?;
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| grey[y * width + x]);
    let mut last_error = None;
    for grid in image.detect_grids() {
        let mut content = Vec::new();
        match grid.decode_to(&mut content) {
            Ok(_) => return Ok(content),
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => UnreadableQr::Undecodable(e),
        None => UnreadableQr::NoCode {
            width: u32::try_from(width).unwrap_or(u32::MAX),
            height: u32::try_from(height).unwrap_or(u32::MAX),
        },
    })
}

/// `content` as a QR code drawn with half blocks, quiet zone included; rows
/// separated by newlines, no trailing newline.
pub fn draw(content: &[u8]) -> Result<String, UnreadableQr> {
    let code = QrCode::new(content).map_err(UnreadableQr::Redraw)?;
    Ok(code
        .render::<Dense1x2>()
        // Blocks are drawn in the terminal's foreground colour: on a dark
        // background they must be the light modules.
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build())
}

/// Reads the QR code in `png` and draws it: [`read`], then [`draw`].
pub fn redraw(png: &[u8]) -> Result<String, UnreadableQr> {
    draw(&read(png)?)
}

/// Decodes a PNG of any colour type and depth into 8-bit luminance, one byte a
/// pixel, transparency composed over white (as an image viewer shows it).
fn greyscale(png: &[u8]) -> Result<(usize, usize, Vec<u8>), UnreadableQr> {
    let mut decoder = png::Decoder::new(Cursor::new(png));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let size = reader
        .output_buffer_size()
        .ok_or(png::DecodingError::LimitsExceeded)?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf)?;
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => return Err(UnreadableQr::Format(other)),
    };
    let (width, height) = (frame.width as usize, frame.height as usize);
    let mut grey = Vec::with_capacity(width * height);
    for row in buf[..frame.buffer_size()].chunks_exact(frame.line_size) {
        for px in row[..width * channels].chunks_exact(channels) {
            let (luma, alpha) = match *px {
                [l] => (u32::from(l), 255),
                [l, a] => (u32::from(l), u32::from(a)),
                [r, g, b] => (luminance(r, g, b), 255),
                [r, g, b, a] => (luminance(r, g, b), u32::from(a)),
                _ => unreachable!("chunks of 1 to 4 channels"),
            };
            let over_white = (luma * alpha + 255 * (255 - alpha)) / 255;
            grey.push(u8::try_from(over_white).unwrap_or(u8::MAX));
        }
    }
    Ok((width, height, grey))
}

/// ITU-R BT.601 luma, 0–255.
fn luminance(r: u8, g: u8, b: u8) -> u32 {
    (299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b)) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `pixels` (rows of `channels` bytes each) as an 8-bit PNG.
    fn png_of(width: u32, height: u32, color: png::ColorType, pixels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(pixels).unwrap();
        writer.finish().unwrap();
        out
    }

    /// `content` as an RGBA PNG, `scale` px a module, dark modules in dark
    /// blue on an opaque white quiet zone: another colour type and scale than
    /// the simulator's.
    fn qr_png_rgba(content: &[u8], scale: usize) -> Vec<u8> {
        let code = QrCode::new(content).unwrap();
        let modules = code.width();
        let colors = code.to_colors();
        let side = (modules + 8) * scale;
        let mut pixels = Vec::with_capacity(side * side * 4);
        for y in 0..side {
            for x in 0..side {
                let (mx, my) = ((x / scale).checked_sub(4), (y / scale).checked_sub(4));
                let dark = matches!((mx, my), (Some(mx), Some(my))
                    if mx < modules && my < modules
                        && colors[my * modules + mx] == qrcode::Color::Dark);
                pixels.extend_from_slice(if dark {
                    &[10, 20, 90, 255]
                } else {
                    &[255, 255, 255, 255]
                });
            }
        }
        let side = u32::try_from(side).unwrap();
        png_of(side, side, png::ColorType::Rgba, &pixels)
    }

    #[test]
    fn a_qr_code_in_an_rgba_png_reads_back_to_its_content() {
        let content = b"2@pairing-ref,key1,key2,key3";
        assert_eq!(read(&qr_png_rgba(content, 5)).unwrap(), content);
    }

    #[test]
    fn the_drawing_is_the_content_in_half_blocks_with_a_light_quiet_zone() {
        let content = b"hello";
        let drawing = draw(content).unwrap();
        let modules = QrCode::new(content).unwrap().width() + 8;
        let rows: Vec<&str> = drawing.lines().collect();
        assert_eq!(rows.len(), modules.div_ceil(2), "two modules a row");
        assert!(rows.iter().all(|r| r.chars().count() == modules));
        assert!(
            rows[0].chars().all(|c| c == '█'),
            "the quiet zone is light, drawn as blocks: {}",
            rows[0]
        );
    }

    #[test]
    fn an_image_without_a_qr_code_says_so_with_its_size() {
        let white = png_of(40, 30, png::ColorType::Grayscale, &[255; 40 * 30]);
        let err = read(&white).unwrap_err();
        assert!(
            matches!(
                err,
                UnreadableQr::NoCode {
                    width: 40,
                    height: 30
                }
            ),
            "{err}"
        );
        assert_eq!(err.to_string(), "no QR code was found in the 40×30 image");
    }

    #[test]
    fn bytes_that_are_no_png_say_so() {
        let err = read(b"\x89PNG\r\n\x1a\nnot really").unwrap_err();
        assert!(matches!(err, UnreadableQr::Png(_)), "{err}");
    }
}
