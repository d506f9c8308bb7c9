//! `fleet pair TENANT --qr FILE` against the simulator's real pairing QR: the
//! file is the provider's PNG as received and reads back (rqrr) to the
//! bridge's current pairing payload; `--show` draws a code in half blocks
//! that reads back to the same payload; an image that is no QR code is still
//! written and gets its own error; `--json` stays machine-readable.

use crate::{
    cli_fleet_lifecycle::{tenants_named, unpaired_sim},
    cli_support::{run, run_json, run_with_error, vars},
};
use sqlx::PgPool;
use switchyard_bridge_sim::{Session, SimHandle};
use switchyard_cli::exit::Exit;
use switchyard_tests::services;

/// The content of the one QR code in a greyscale `width`×`height` image.
fn read_qr(width: usize, height: usize, grey: &[u8]) -> String {
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| grey[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    grids[0].decode().expect("the QR code reads").1
}

/// The content of the QR code in the simulator's PNG (8-bit greyscale).
fn read_png_qr(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (frame.color_type, frame.bit_depth),
        (png::ColorType::Grayscale, png::BitDepth::Eight)
    );
    read_qr(frame.width as usize, frame.height as usize, &buf)
}

/// The lines of `text` that are half-block drawing (at least one block each).
fn drawing(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains(['█', '▀', '▄']))
        .filter(|l| l.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' ')))
        .collect()
}

/// Turns a half-block drawing back into pixels (blocks are the light modules,
/// as drawn for a dark terminal), `SCALE` px a module, and reads its QR code.
fn read_drawn_qr(rows: &[&str]) -> String {
    const SCALE: usize = 4;
    let cells: Vec<Vec<char>> = rows.iter().map(|r| r.chars().collect()).collect();
    let modules_wide = cells[0].len();
    assert!(cells.iter().all(|r| r.len() == modules_wide), "a rectangle");
    let mut modules: Vec<Vec<bool>> = Vec::new();
    for row in &cells {
        let upper = row.iter().map(|c| matches!(c, '█' | '▀')).collect();
        let lower = row.iter().map(|c| matches!(c, '█' | '▄')).collect();
        modules.push(upper);
        modules.push(lower);
    }
    let (width, height) = (modules_wide * SCALE, modules.len() * SCALE);
    let mut grey = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            grey.push(if modules[y / SCALE][x / SCALE] {
                255
            } else {
                0
            });
        }
    }
    read_qr(width, height, &grey)
}

/// An 8-bit greyscale PNG: a black square on white, no QR code.
fn png_without_a_qr_code() -> Vec<u8> {
    const SIDE: u32 = 64;
    let pixels: Vec<u8> = (0..SIDE * SIDE)
        .map(|i| {
            let (x, y) = (i % SIDE, i / SIDE);
            if (16..48).contains(&x) && (16..48).contains(&y) {
                0
            } else {
                255
            }
        })
        .collect();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, SIDE, SIDE);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

/// The current pairing payload the simulator showed for `tenant`'s bridge.
fn payload(sim: &SimHandle, tenant: &str) -> String {
    sim.bridge(tenant)
        .unwrap()
        .qr_payload
        .expect("a pairing attempt is under way")
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn pair_by_qr_writes_a_png_that_reads_back_to_the_current_pairing_payload(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["acme", "globex"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "acme", "globex"], &env).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.png");
    let path = file.to_str().unwrap();

    let (exit, _) = run_json(&["fleet", "pair", "acme", "--qr", path, "--dry-run"], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert!(!file.exists(), "a dry run writes nothing");
    assert_eq!(sim.bridge("acme").unwrap().qr_payload, None, "nor asks");

    let (exit, text) = run(&["fleet", "pair", "acme", "--qr", path], &env).await;
    assert_eq!(exit, Exit::Ok, "{text}");
    assert!(text.contains("written to"), "{text}");
    assert!(
        drawing(&text).is_empty(),
        "not a terminal and no --show: nothing drawn: {text}"
    );
    let png_bytes = std::fs::read(&file).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let acme = payload(&sim, "acme");
    assert_eq!(read_png_qr(&png_bytes), acme);
    assert!(acme.starts_with("2@"), "shaped like WhatsApp's: {acme}");
    assert_eq!(
        sim.bridge("acme").unwrap().session,
        Session::Unpaired,
        "a QR only pairs once scanned"
    );

    let other = dir.path().join("globex.png");
    let (exit, _) = run(
        &["fleet", "pair", "globex", "--qr", other.to_str().unwrap()],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok);
    let globex = read_png_qr(&std::fs::read(&other).unwrap());
    assert_eq!(globex, payload(&sim, "globex"));
    assert_ne!(globex, acme, "each bridge has its own pairing payload");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn pair_by_qr_with_show_draws_a_code_that_reads_back_to_the_pairing_payload(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["acme"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "acme"], &env).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.png");
    let path = file.to_str().unwrap();

    let (exit, text) = run(&["fleet", "pair", "acme", "--qr", path, "--show"], &env).await;

    assert_eq!(exit, Exit::Ok, "{text}");
    assert!(
        text.contains("from the drawing below or the file"),
        "{text}"
    );
    let rows = drawing(&text);
    assert!(rows.len() > 10, "a drawn QR code: {text}");
    assert!(
        rows.iter().all(|r| r.chars().count() <= 80),
        "fits an 80-column terminal"
    );
    let expected = payload(&sim, "acme");
    assert_eq!(read_drawn_qr(&rows), expected);
    assert_eq!(read_png_qr(&std::fs::read(&file).unwrap()), expected);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn pair_by_qr_as_json_draws_nothing_and_refuses_show(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["acme"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "acme"], &env).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.png");
    let path = file.to_str().unwrap();

    let (exit, report) = run_json(&["fleet", "pair", "acme", "--qr", path], &env).await;
    assert_eq!(exit, Exit::Ok, "{report}");
    assert_eq!(report["method"], "qr");
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len()
    );
    assert!(report.get("drawing").is_none(), "{report}");

    let (exit, text, error) = run_with_error(
        &["--json", "fleet", "pair", "acme", "--qr", path, "--show"],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Usage, "{text}");
    assert!(text.is_empty(), "nothing printed: {text}");
    assert!(error.unwrap().contains("--show"));
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn pair_by_qr_with_an_image_that_is_no_qr_code_writes_it_and_says_so(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["acme"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "acme"], &env).await;
    let served = png_without_a_qr_code();
    sim.set_qr_image("acme", Some(served.clone())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.png");
    let path = file.to_str().unwrap();

    let (exit, text, error) =
        run_with_error(&["fleet", "pair", "acme", "--qr", path, "--show"], &env).await;

    assert_eq!(exit, Exit::Failure, "{text}");
    let error = error.unwrap();
    assert!(
        error.contains("no QR code was found in the 64×64 image"),
        "{error}"
    );
    assert!(error.contains(path), "names the file written: {error}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        served,
        "the provider's PNG, exactly as received"
    );
    assert!(drawing(&text).is_empty(), "{text}");

    // Without drawing nothing reads the image: it is written as received.
    std::fs::remove_file(&file).unwrap();
    let (exit, text) = run(&["fleet", "pair", "acme", "--qr", path], &env).await;
    assert_eq!(exit, Exit::Ok, "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), served);
}
