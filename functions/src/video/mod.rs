//! `video`: video analytics, the seed's second workload ("video-analytic").
//!
//! Each invocation decodes frames of a bundled clip, resizes them by
//! `scale`, converts them to grayscale, blurs them (gaussian or box), and
//! finds moving objects by frame differencing: pixels whose blurred
//! brightness changed by more than `threshold` since the previous frame are
//! marked, the marks are dilated to close gaps, and the connected regions of
//! at least `min_area` pixels are counted and boxed. This is the classic
//! motion-detection pipeline of surveillance analytics (OpenCV's
//! `absdiff`/`threshold`/`dilate`/`findContours` recipe), the kind of
//! CPU-heavy, frame-by-frame work the video functions of FunctionBench and
//! SeBS do.
//!
//! Decoding, resizing, grayscale and the gaussian blur come from the `image`
//! crate; the box blur, dilation and connected-component labelling are small
//! and hand-written in [`motion`]. The clip is synthetic and known
//! ([`scene`]): three shapes move in every frame, so every frame must show
//! three objects.

pub mod clip;
pub mod motion;
pub mod scene;

use image::imageops::{self, FilterType};
use image::{GrayImage, ImageFormat};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::catalogue::{parse_params, Function, FunctionInfo, InvokeError, ParamInfo};
use motion::Component;

/// Frames processed per invocation at the defaults; chosen so the default
/// invocation is the long function of the mix (its measured time:
/// docs/measurements.md, functions).
pub const DEFAULT_FRAMES: u32 = 60;
/// Most frames one invocation may process.
pub const MAX_FRAMES: u32 = 1000;
/// Cap on `frames × scale²` (the work in unscaled frames), so no single
/// invocation runs for more than a few seconds.
pub const MAX_WORK: f64 = 1000.0;
/// Smallest and largest resize factor.
pub const SCALE_RANGE: std::ops::RangeInclusive<f64> = 0.25..=4.0;
/// Brightness change (0–255) that counts as motion, by default.
pub const DEFAULT_THRESHOLD: u32 = 25;
/// Smallest object, in pixels of the unscaled clip, by default.
pub const DEFAULT_MIN_AREA: u32 = 150;
/// Standard deviation of the blur at scale 1, pixels.
pub const BLUR_SIGMA: f32 = 1.5;
/// Dilation radius at scale 1, pixels.
pub const DILATE_RADIUS: f32 = 2.0;

/// Parameters of `video`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VideoParams {
    /// Frames to analyse, each against its predecessor; the clip repeats.
    pub frames: u32,
    /// Resize factor applied to every decoded frame.
    pub scale: f64,
    /// `gaussian` or `box`.
    pub blur: String,
    /// Brightness change (1..=254) that counts as motion.
    pub threshold: u32,
    /// Smallest object, in pixels of the unscaled clip (scaled by `scale`²).
    pub min_area: u32,
}

impl Default for VideoParams {
    fn default() -> Self {
        Self {
            frames: DEFAULT_FRAMES,
            scale: 1.0,
            blur: "gaussian".to_string(),
            threshold: DEFAULT_THRESHOLD,
            min_area: DEFAULT_MIN_AREA,
        }
    }
}

/// The blur applied before differencing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Blur {
    /// `image`'s gaussian blur with this sigma.
    Gaussian(f32),
    /// A box blur of this radius (same variance as the gaussian).
    Box(u32),
}

/// Validated parameters: the work one invocation does.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoJob {
    pub frames: u32,
    pub width: u32,
    pub height: u32,
    pub blur: Blur,
    pub threshold: u8,
    pub dilate_radius: u32,
    /// Smallest object in processed pixels.
    pub min_area: u32,
}

impl VideoParams {
    /// Checks the parameters and derives the processing settings.
    pub fn validate(&self) -> Result<VideoJob, InvokeError> {
        let bad = |m: String| Err(InvokeError::BadParams(m));
        if self.frames == 0 || self.frames > MAX_FRAMES {
            return bad(format!(
                "`frames` must be between 1 and {MAX_FRAMES}, got {}",
                self.frames
            ));
        }
        if !self.scale.is_finite() || !SCALE_RANGE.contains(&self.scale) {
            return bad(format!(
                "`scale` must be between {} and {}, got {}",
                SCALE_RANGE.start(),
                SCALE_RANGE.end(),
                self.scale
            ));
        }
        let work = f64::from(self.frames) * self.scale * self.scale;
        if work > MAX_WORK {
            return bad(format!(
                "`frames` × `scale`² must be at most {MAX_WORK}, got {work}: \
                 lower `frames` or `scale`"
            ));
        }
        if !(1..=254).contains(&self.threshold) {
            return bad(format!(
                "`threshold` must be between 1 and 254, got {}",
                self.threshold
            ));
        }
        if self.min_area > 100_000 {
            return bad(format!(
                "`min_area` must be at most 100000 pixels, got {}",
                self.min_area
            ));
        }
        let s = self.scale as f32;
        let sigma = BLUR_SIGMA * s;
        let blur = match self.blur.as_str() {
            "gaussian" => Blur::Gaussian(sigma),
            // A box of width 2r+1 has variance ((2r+1)² − 1) / 12.
            "box" => Blur::Box((((12.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0).round() as u32),
            other => return bad(format!("`blur` must be `gaussian` or `box`, got {other:?}")),
        };
        Ok(VideoJob {
            frames: self.frames,
            width: ((scene::WIDTH as f32 * s).round() as u32).max(1),
            height: ((scene::HEIGHT as f32 * s).round() as u32).max(1),
            blur,
            threshold: self.threshold as u8,
            dilate_radius: ((DILATE_RADIUS * s).round() as u32).max(1),
            min_area: ((self.min_area as f32 * s * s).round() as u32).max(1),
        })
    }
}

/// Moving objects found in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameMotion {
    /// Index of the frame in the clip.
    pub frame: usize,
    /// Pixels whose brightness changed by more than the threshold.
    pub changed_pixels: u64,
    /// Objects of at least the minimum area, in raster order.
    pub objects: Vec<Component>,
}

impl VideoJob {
    /// Decodes, resizes, grays and blurs clip frame `i`.
    fn prepare(&self, i: usize) -> Result<GrayImage, InvokeError> {
        let bytes = clip::FRAMES[i % clip::FRAMES.len()];
        let rgb = image::load_from_memory_with_format(bytes, ImageFormat::Jpeg)
            .map_err(|e| InvokeError::Failed(format!("cannot decode clip frame {i}: {e}")))?
            .into_rgb8();
        let rgb = if rgb.dimensions() == (self.width, self.height) {
            rgb
        } else {
            imageops::resize(&rgb, self.width, self.height, FilterType::Triangle)
        };
        let gray = imageops::grayscale(&rgb);
        Ok(match self.blur {
            Blur::Gaussian(sigma) => imageops::blur(&gray, sigma),
            Blur::Box(r) => motion::box_blur(&gray, r),
        })
    }

    /// Analyses frames 1..=`frames` of the (repeating) clip, each against
    /// the frame before it.
    pub fn run(&self) -> Result<Vec<FrameMotion>, InvokeError> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut previous = self.prepare(0)?;
        let mut out = Vec::with_capacity(self.frames as usize);
        for n in 1..=self.frames as usize {
            let frame = n % clip::FRAMES.len();
            let current = self.prepare(frame)?;
            let (mask, changed_pixels) =
                motion::difference_mask(&previous, &current, self.threshold);
            let mask = motion::dilate(&mask, w, h, self.dilate_radius as usize);
            let objects = motion::components(&mask, w, h)
                .into_iter()
                .filter(|c| c.area >= self.min_area)
                .collect();
            out.push(FrameMotion {
                frame,
                changed_pixels,
                objects,
            });
            previous = current;
        }
        Ok(out)
    }
}

/// The `video` function.
#[derive(Debug, Clone, Copy, Default)]
pub struct Video;

impl Function for Video {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "video",
            summary: "motion detection on a bundled clip: decode, resize, gray, blur, frame difference, count and box moving objects",
            params: vec![
                ParamInfo {
                    name: "frames",
                    kind: "integer",
                    default: json!(DEFAULT_FRAMES),
                    doc: "frames to analyse (1..=1000, frames × scale² ≤ 1000), the 36-frame clip repeating",
                },
                ParamInfo {
                    name: "scale",
                    kind: "number",
                    default: json!(1.0),
                    doc: "resize factor of the 320x240 frames (0.25..=4.0)",
                },
                ParamInfo {
                    name: "blur",
                    kind: "string",
                    default: json!("gaussian"),
                    doc: "`gaussian` or `box` (sigma 1.5 px × scale)",
                },
                ParamInfo {
                    name: "threshold",
                    kind: "integer",
                    default: json!(DEFAULT_THRESHOLD),
                    doc: "brightness change that counts as motion (1..=254)",
                },
                ParamInfo {
                    name: "min_area",
                    kind: "integer",
                    default: json!(DEFAULT_MIN_AREA),
                    doc: "smallest object in pixels of the unscaled clip (scaled by scale²)",
                },
            ],
        }
    }

    fn invoke(&self, params: &Value) -> Result<Value, InvokeError> {
        let p: VideoParams = parse_params(params)?;
        let job = p.validate()?;
        let motion = job.run()?;
        let total: u64 = motion.iter().map(|m| m.changed_pixels).sum();
        let per_frame: Vec<Value> = motion
            .iter()
            .map(|m| {
                json!({
                    "frame": m.frame,
                    "objects": m.objects.len(),
                    "boxes": m.objects.iter().map(|c| [c.x, c.y, c.w, c.h]).collect::<Vec<_>>(),
                    "changed_pixels": m.changed_pixels,
                })
            })
            .collect();
        Ok(json!({
            "frames": job.frames,
            "scale": p.scale,
            "width": job.width,
            "height": job.height,
            "blur": p.blur,
            "objects": motion.iter().map(|m| m.objects.len()).collect::<Vec<_>>(),
            "per_frame": per_frame,
            "total_changed_pixels": total,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::scene::{Mover, FLY, FRAMES, HEIGHT, MOVERS, WIDTH};
    use super::*;

    fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
        let ix = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
        let iy = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
        let inter = ix * iy;
        inter / (a[2] * a[3] + b[2] * b[3] - inter)
    }

    /// Where `m` moved between frames `t - 1` and `t`: the union of its two
    /// boxes, in processed pixels at `scale`.
    fn truth(m: &Mover, t: usize, scale: f32) -> [f32; 4] {
        let (a, b) = (m.bbox(t + FRAMES - 1), m.bbox(t));
        let x0 = a[0].min(b[0]) as f32;
        let y0 = a[1].min(b[1]) as f32;
        let x1 = (a[0] + a[2]).max(b[0] + b[2]) as f32;
        let y1 = (a[1] + a[3]).max(b[1] + b[3]) as f32;
        [x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale]
    }

    fn run(params: Value) -> (VideoJob, Vec<FrameMotion>) {
        let job = parse_params::<VideoParams>(&params)
            .unwrap()
            .validate()
            .unwrap();
        let motion = job.run().unwrap();
        (job, motion)
    }

    /// Every frame shows exactly the three movers, each boxed where it moved
    /// (intersection over union at least `min_iou`).
    fn assert_matches_scene(motion: &[FrameMotion], scale: f32, min_iou: f32) {
        for m in motion {
            assert_eq!(
                m.objects.len(),
                MOVERS.len(),
                "frame {}: {:?}",
                m.frame,
                m.objects
            );
            for mover in &MOVERS {
                let want = truth(mover, m.frame, scale);
                let best = m
                    .objects
                    .iter()
                    .map(|c| iou(want, [c.x as f32, c.y as f32, c.w as f32, c.h as f32]))
                    .fold(0.0, f32::max);
                assert!(
                    best >= min_iou,
                    "frame {}: {} moved within {want:?}, best box IoU {best}: {:?}",
                    m.frame,
                    mover.name,
                    m.objects
                );
            }
        }
    }

    #[test]
    fn bundled_clip_is_the_rendered_scene() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/clip");
        let on_disk = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("jpg".as_ref()))
            .count();
        assert_eq!(
            on_disk, FRAMES,
            "assets/clip holds other frames than the clip embeds"
        );
        let mut total = 0;
        for (t, bytes) in clip::FRAMES.iter().enumerate() {
            total += bytes.len();
            assert_eq!(
                *bytes,
                std::fs::read(dir.join(clip::file_name(t)))
                    .unwrap()
                    .as_slice()
            );
            let decoded = image::load_from_memory(bytes).unwrap().into_rgb8();
            assert_eq!(decoded.dimensions(), (WIDTH, HEIGHT));
            let rendered = scene::render(t);
            let err: u64 = decoded
                .as_raw()
                .iter()
                .zip(rendered.as_raw())
                .map(|(&a, &b)| u64::from(a.abs_diff(b)))
                .sum();
            let mean = err as f64 / decoded.as_raw().len() as f64;
            assert!(
                mean < 3.0,
                "frame {t} differs from the scene by {mean:.2} per channel on average: \
                 re-run `cargo run -p slokit-functions --example make_clip`"
            );
        }
        assert!(total <= 1 << 20, "the clip is {total} bytes, over 1 MiB");
    }

    #[test]
    fn finds_the_three_movers_in_every_frame_of_the_loop() {
        let (job, motion) = run(json!({ "frames": FRAMES }));
        assert_eq!((job.width, job.height), (WIDTH, HEIGHT));
        assert_eq!(motion.len(), FRAMES);
        assert_eq!(
            motion.last().unwrap().frame,
            0,
            "the loop ends back at frame 0"
        );
        assert_matches_scene(&motion, 1.0, 0.6);
    }

    #[test]
    fn the_fly_is_motion_too_but_below_min_area() {
        let (_, with_fly) = run(json!({ "frames": 6, "min_area": 1 }));
        let fly_found = with_fly.iter().any(|m| {
            let want = truth(&FLY, m.frame, 1.0);
            m.objects.len() == MOVERS.len() + 1
                && m.objects
                    .iter()
                    .any(|c| iou(want, [c.x as f32, c.y as f32, c.w as f32, c.h as f32]) > 0.2)
        });
        assert!(fly_found, "{with_fly:?}");
        let (_, huge) = run(json!({ "frames": 3, "min_area": 100_000 }));
        assert!(huge
            .iter()
            .all(|m| m.objects.is_empty() && m.changed_pixels > 0));
    }

    #[test]
    fn scale_resizes_and_objects_are_still_found() {
        for (scale, min_iou) in [(0.5, 0.5), (2.0, 0.6)] {
            let (job, motion) = run(json!({ "frames": 4, "scale": scale }));
            assert_eq!(
                (job.width, job.height),
                (
                    (WIDTH as f64 * scale) as u32,
                    (HEIGHT as f64 * scale) as u32
                )
            );
            assert_matches_scene(&motion, scale as f32, min_iou);
        }
    }

    #[test]
    fn box_blur_finds_the_same_objects() {
        let (job, motion) = run(json!({ "frames": 6, "blur": "box" }));
        assert_eq!(job.blur, Blur::Box(2));
        assert_matches_scene(&motion, 1.0, 0.6);
    }

    #[test]
    fn frames_past_the_end_repeat_the_clip() {
        let reply = Video
            .invoke(&json!({ "frames": FRAMES + 3, "scale": 0.5 }))
            .unwrap();
        let per_frame = reply["per_frame"].as_array().unwrap();
        assert_eq!(per_frame.len(), FRAMES + 3);
        for i in 0..3 {
            assert_eq!(per_frame[i]["frame"], per_frame[i + FRAMES]["frame"]);
            assert_eq!(per_frame[i]["boxes"], per_frame[i + FRAMES]["boxes"]);
        }
        let total: u64 = per_frame
            .iter()
            .map(|f| f["changed_pixels"].as_u64().unwrap())
            .sum();
        assert_eq!(reply["total_changed_pixels"], json!(total));
        assert_eq!(reply["objects"][0], json!(3));
        assert_eq!(per_frame[0]["boxes"].as_array().unwrap().len(), 3);
        assert_eq!(per_frame[0]["boxes"][0].as_array().unwrap().len(), 4);
    }

    #[test]
    fn invalid_parameters_are_rejected_naming_the_parameter() {
        for (params, name) in [
            (json!({"frames": 0}), "frames"),
            (json!({"frames": MAX_FRAMES + 1}), "frames"),
            (json!({"scale": 0.1}), "scale"),
            (json!({"scale": 4.5}), "scale"),
            (json!({"blur": "median"}), "blur"),
            (json!({"threshold": 0}), "threshold"),
            (json!({"threshold": 255}), "threshold"),
            (json!({"min_area": 100_001}), "min_area"),
            (json!({"frames": 100, "scale": 4.0}), "`frames` × `scale`²"),
            (json!({"frame": 3}), "frame"),
            (json!({"scale": "big"}), "invalid type"),
        ] {
            let e = Video.invoke(&params).unwrap_err();
            assert_eq!(e.status(), 400, "{params}");
            assert!(e.to_string().contains(name), "{params}: {e}");
        }
    }
}
