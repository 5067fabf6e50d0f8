// The Explore page: the course's ViT-Ti/16 (notebook 08's FoodVision Mini) runs in the reader's browser with ONNX
// Runtime Web. The model file has two outputs, the logits and the attention of every layer and head
// ([1, 12, 3, 197, 197]); every picture below is drawn from them. The photo never leaves the browser.
// tools/explore.py writes the files this script reads into the page's folder when the site is built.
"use strict";

// What the page computed last, for its browser test (tests/test_explore.py) and for the curious reader's console.
window.explorer = {ready: false};

const $ = (id) => document.getElementById(id);

// ---- Preprocessing: the course's Resize(248, bicubic), CenterCrop(224), ToTensor, Normalize, step by step. ----
// torchvision resizes a PIL image with Pillow, whose bicubic filter is rewritten here in Pillow's own integer
// arithmetic (libImaging/Resample.c), so that the page feeds the model the numbers the course does.

const PRECISION_BITS = 22;  // Pillow keeps 8-bit weights as integers scaled by 2^22

function bicubic(x) {  // Keys' cubic with a = -0.5, Pillow's "BICUBIC"
  x = Math.abs(x);
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

// For each output pixel: the first input pixel it reads and the integer weights of the pixels from there.
// Shrinking widens the filter by the scale (antialiasing), as Pillow does.
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const result = [];
  for (let out = 0; out < outSize; out++) {
    const centre = (out + 0.5) * scale;
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const last = Math.min(Math.trunc(centre + support + 0.5), inSize);
    const weights = [];
    for (let x = first; x < last; x++) weights.push(bicubic((x - centre + 0.5) / filterScale));
    const total = weights.reduce((a, b) => a + b, 0);
    // Pillow rounds each normalised weight half away from zero to an integer.
    const integers = weights.map((w) => Math.trunc((total ? w / total : w) * (1 << PRECISION_BITS) + Math.sign(w) * 0.5));
    result.push({first, integers: Int32Array.from(integers)});
  }
  return result;
}

// One pass of the separable filter along x (horizontal) or y: RGBA bytes in and out, as Pillow rounds them.
function resamplePass(pixels, width, height, outSize, horizontal) {
  const [outWidth, outHeight] = horizontal ? [outSize, height] : [width, outSize];
  const result = new Uint8ClampedArray(outWidth * outHeight * 4).fill(255);
  const coeffs = coefficients(horizontal ? width : height, outSize);
  const step = horizontal ? 4 : width * 4;  // from one input pixel to the next: a pixel on, or a row down
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const {first, integers} = coeffs[horizontal ? x : y];
      const start = horizontal ? (y * width + first) * 4 : (first * width + x) * 4;
      for (let c = 0; c < 3; c++) {
        let sum = 1 << (PRECISION_BITS - 1);  // half of the divisor below: rounds to nearest
        for (let i = 0; i < integers.length; i++) sum += pixels[start + i * step + c] * integers[i];
        result[(y * outWidth + x) * 4 + c] = Math.floor(sum / (1 << PRECISION_BITS));  // the array clamps to 0-255
      }
    }
  }
  return result;
}

// RGBA pixels of a photo -> {crop: the 224 x 224 RGBA the model sees, input: its [1, 3, 224, 224] float32 tensor}.
function preprocess(rgba, width, height, config) {
  const short = Math.min(width, height), long = Math.max(width, height);
  const longSide = Math.floor(config.resize * long / short);  // torchvision truncates the longer side
  const [newWidth, newHeight] = width <= height ? [config.resize, longSide] : [longSide, config.resize];
  const wide = resamplePass(rgba, width, height, newWidth, true);  // Pillow: horizontal first, then vertical
  const resized = resamplePass(wide, newWidth, height, newHeight, false);
  const size = config.crop;
  // CenterCrop's offsets: Python's round(), which rounds halves to even.
  const roundHalfEven = (v) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));
  const top = roundHalfEven((newHeight - size) / 2), left = roundHalfEven((newWidth - size) / 2);
  const crop = new Uint8ClampedArray(size * size * 4);
  const input = new Float32Array(3 * size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const source = ((y + top) * newWidth + x + left) * 4, target = y * size + x;
      crop.set(resized.subarray(source, source + 4), target * 4);
      for (let c = 0; c < 3; c++) {  // ToTensor then Normalize, each rounded to float32 as torch computes them
        const unit = Math.fround(resized[source + c] / 255);
        input[c * size * size + target] = Math.fround(unit - config.mean[c]) / config.std[c];
      }
    }
  }
  return {crop, input};
}

// ---- The model's outputs, read as the course's notebooks read them. ----

function softmax(logits) {
  const top = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / total);
}

// Row `query` of layer `layer`'s attention (0-based) for head `head`, or the heads' mean when head is "mean".
function attentionRow(attention, layer, head, query) {
  const [, , heads, tokens] = attention.dims;  // [1, layers, heads, tokens, tokens]
  const row = new Float64Array(tokens);
  const chosen = head === "mean" ? [...Array(heads).keys()] : [head];
  for (const h of chosen) {
    const start = ((layer * heads + h) * tokens + query) * tokens;
    for (let t = 0; t < tokens; t++) row[t] += attention.data[start + t] / chosen.length;
  }
  return row;
}

// Attention rollout (notebook 07; Abnar & Zuidema, 2020) of token `query` through layers 1..layer+1: the row of
// A_layer ... A_1, each A the heads' mean plus the identity (the residual), its rows rescaled to sum to 1.
function rolloutRow(attention, layer, query) {
  const tokens = attention.dims[3];
  let row = new Float64Array(tokens);
  row[query] = 1;
  for (let l = layer; l >= 0; l--) {
    const next = new Float64Array(tokens);
    for (let i = 0; i < tokens; i++) {
      if (!row[i]) continue;
      const mixed = attentionRow(attention, l, "mean", i);
      mixed[i] += 1;
      const total = mixed.reduce((a, b) => a + b, 0);
      for (let j = 0; j < tokens; j++) next[j] += row[i] * mixed[j] / total;
    }
    row = next;
  }
  return row;
}

// Mean attention distance (the paper's Figure 7, right) of every patch as a query: the pixel distance to each
// patch weighted by its attention, the class token left out and the patch weights rescaled to sum to 1.
function distances(attention, layer, head, grid, patchSize) {
  const result = new Float64Array(grid * grid);
  for (let q = 0; q < grid * grid; q++) {
    const row = attentionRow(attention, layer, head, q + 1);
    let weighted = 0, total = 0;
    for (let k = 0; k < grid * grid; k++) {
      const dy = Math.floor(q / grid) - Math.floor(k / grid), dx = (q % grid) - (k % grid);
      weighted += row[k + 1] * Math.hypot(dx, dy) * patchSize;
      total += row[k + 1];
    }
    result[q] = total > 0 ? weighted / total : 0;
  }
  return result;
}

// ---- Drawing ----

const SCALE = 2;  // canvas pixels per model pixel

// The crop, dimmed where `values` (one per patch) are low, and the clicked patch outlined.
function drawOverPhoto(canvas, crop, values, grid, patch) {
  const size = Math.sqrt(crop.length / 4), cell = size / grid;
  const photo = new OffscreenCanvas(size, size);
  photo.getContext("2d").putImageData(new ImageData(crop, size, size), 0, 0);
  const context = canvas.getContext("2d");
  context.drawImage(photo, 0, 0, size * SCALE, size * SCALE);
  const top = Math.max(...values) || 1;
  for (let k = 0; k < values.length; k++) {
    context.fillStyle = `rgba(0, 0, 0, ${0.85 * (1 - values[k] / top)})`;
    context.fillRect((k % grid) * cell * SCALE, Math.floor(k / grid) * cell * SCALE, cell * SCALE, cell * SCALE);
  }
  outline(context, patch, grid, cell * SCALE);
}

// A map of `values` in -1..1 (blue to white to red), the clicked patch outlined.
function drawMap(canvas, values, grid, patch) {
  const context = canvas.getContext("2d"), cell = canvas.width / grid;
  for (let k = 0; k < values.length; k++) {
    const v = Math.max(-1, Math.min(1, values[k]));
    const [r, g, b] = v >= 0 ? [255, 255 * (1 - v), 255 * (1 - v)] : [255 * (1 + v), 255 * (1 + v), 255];
    context.fillStyle = `rgb(${r}, ${g}, ${b})`;
    context.fillRect((k % grid) * cell, Math.floor(k / grid) * cell, cell, cell);
  }
  outline(context, patch, grid, cell);
}

function outline(context, patch, grid, cell) {
  context.strokeStyle = "#00e5ff";
  context.lineWidth = 3;
  context.strokeRect((patch % grid) * cell, Math.floor(patch / grid) * cell, cell, cell);
}

// ---- The page ----

const state = {patch: 0};  // the clicked patch (0 ... N - 1, row by row)

function render() {
  const {extra} = state;
  if (!state.attention) return;
  const grid = extra.grid_size, layer = Number($("layer").value) - 1, view = $("view").value;
  const head = $("head").value === "mean" ? "mean" : Number($("head").value) - 1;
  let values;
  if (view === "rollout") values = rolloutRow(state.attention, layer, state.patch + 1).slice(1);
  else if (view === "distance") values = distances(state.attention, layer, head, grid, extra.patch_size);
  else values = attentionRow(state.attention, layer, head, state.patch + 1).slice(1);
  drawOverPhoto($("attention"), state.crop, values, grid, state.patch);
  const similarity = extra.position_similarity[state.patch];
  drawMap($("position"), similarity, grid, state.patch);
  for (const caption of document.querySelectorAll("[data-view]")) caption.hidden = caption.dataset.view !== view;
  const value = values[state.patch];  // at the clicked patch: a weight, or a distance in pixels
  $("patch").textContent = `${Math.floor(state.patch / grid) + 1}, ${(state.patch % grid) + 1}: ` +
    (view === "distance" ? `${value.toFixed(1)} px` : value.toFixed(4));
  $("head").disabled = view === "rollout";
  window.explorer.drawn = {view, layer: layer + 1, head: head === "mean" ? "mean" : head + 1, patch: state.patch,
                           values: Array.from(values)};
}

async function predict(bitmap, name) {
  const {config, session} = state;
  const start = performance.now();
  const pixels = new OffscreenCanvas(bitmap.width, bitmap.height).getContext("2d");
  pixels.drawImage(bitmap, 0, 0);
  const rgba = pixels.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const {crop, input} = preprocess(rgba, bitmap.width, bitmap.height, config);
  const outputs = await session.run({images: new ort.Tensor("float32", input, [1, 3, config.crop, config.crop])});
  const probabilities = softmax(outputs.logits.data);
  Object.assign(state, {crop, attention: outputs.attention});
  const milliseconds = performance.now() - start;
  const ranked = config.class_names.map((name, i) => [name, probabilities[i]]).sort((a, b) => b[1] - a[1]);
  $("prediction").innerHTML = ranked.map(([name, p], i) =>
    `<span class="explore-class${i ? "" : " explore-top"}">${name} ${(100 * p).toFixed(1)} %</span>`).join(" ");
  $("timing").textContent = `${milliseconds.toFixed(0)} ms`;
  Object.assign(window.explorer, {photo: name, input, milliseconds, probabilities: Object.fromEntries(ranked)});
  render();
}

// A photo file or address -> an ImageBitmap turned as the photo's EXIF says (the course's load_image does too),
// its colours as stored (Pillow applies no colour profile either).
async function decode(blob) {
  return createImageBitmap(blob, {imageOrientation: "from-image", colorSpaceConversion: "none"});
}

async function main() {
  const [config, extra] = await Promise.all(["foodvision.json", "explore.json"].map((f) => fetch(f).then((r) => r.json())));
  ort.env.wasm.numThreads = 1;  // a static site is not cross-origin isolated: no WebAssembly threads
  ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;
  const session = await ort.InferenceSession.create("foodvision.onnx", {executionProviders: ["wasm"]});
  Object.assign(state, {config, extra, session, patch: (extra.grid_size + 1) * Math.floor(extra.grid_size / 2)});
  for (const photo of extra.photos) $("photo").add(new Option(photo.label, photo.file));
  for (let layer = 1; layer <= extra.layers; layer++) $("layer").add(new Option(layer, layer));
  $("layer").value = extra.layers;
  for (const id of ["layer", "head", "view"]) $(id).addEventListener("change", render);
  const choose = async () => predict(await decode(await (await fetch($("photo").value)).blob()), $("photo").value);
  $("photo").addEventListener("change", choose);
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    let bitmap;
    try {
      bitmap = await decode(file);
    } catch {  // not an image, or a kind this browser cannot read: say so, keep the last photo's pictures
      $("prediction").textContent = `${file.name} ${$("prediction").dataset.unreadable}`;  // the page's language
      return;
    }
    predict(bitmap, file.name);
  });
  $("attention").addEventListener("click", (event) => {  // the clicked pixel -> its patch
    const box = event.target.getBoundingClientRect(), grid = extra.grid_size;
    const column = Math.min(Math.floor((event.clientX - box.left) / box.width * grid), grid - 1);
    const row = Math.min(Math.floor((event.clientY - box.top) / box.height * grid), grid - 1);
    state.patch = row * grid + column;
    render();
  });
  await choose();
  window.explorer.ready = true;
}

window.explorer.preprocess = preprocess;  // the test compares it with the course's transform
main().catch((error) => {
  $("prediction").textContent = `The model could not run here: ${error.message}`;
  throw error;
});
