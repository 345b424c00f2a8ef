"""The page people use: one HTML file with a little JavaScript, no build, no network.

The current image sits in the middle with the four candidates around it on
the two axes (right/left: +u/−u, up/down: +v/−v). Click one, or press an
arrow key; Backspace undoes the last pick; Enter means "I am satisfied" and
shows the final image with a download link. The strip below is the path of
picks so far. The kinds of scene come from ``/api/info`` (the generator's
classes); every session starts from a fresh random image (the seed is the
clock). One request is in flight at a time, and an error from the API is
shown in words above the board.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pirtune: find your image</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 44rem; color: #222; }
  h1 { font-size: 1.4rem; }
  #board { display: grid; grid-template-columns: repeat(3, 9rem);
           grid-template-rows: repeat(3, 9rem); gap: .5rem; justify-content: center;
           margin: 1rem 0; }
  #board img { width: 9rem; height: 9rem; image-rendering: pixelated; border-radius: .4rem; }
  #board button { padding: 0; border: 3px solid transparent; border-radius: .6rem; background: none;
                  cursor: pointer; }
  #board button:hover, #board button:focus { border-color: #1a73e8; }
  #current { border: 3px solid #888; border-radius: .6rem; }
  #path img { width: 3rem; height: 3rem; image-rendering: pixelated; margin-right: .2rem; }
  .controls button { font-size: 1rem; margin-right: .5rem; }
  #final img { width: 16rem; height: 16rem; image-rendering: pixelated; }
  #error { color: #b00020; }
  .hidden { display: none; }
</style>
</head>
<body>
<h1>Find the image you want, one pick at a time</h1>
<form id="start">
  <p>Pick the image closest to what you want among the four around the middle one.
     Keep going until you are happy with it.</p>
  <label>Kind of scene <select name="image_class" id="classes"></select></label>
  <label>Search <select name="algorithm"><option value="preference">learning (fast)</option>
    <option value="axis">paper's axes</option><option value="random">random</option>
    </select></label>
  <button type="submit">Start</button>
</form>
<p id="error" role="alert" class="hidden"></p>
<section id="session" class="hidden">
  <p>Round <span id="round">1</span>: click the closest image, or press an arrow key.</p>
  <div id="board">
    <span></span><button id="c2" aria-label="up"><img alt="candidate up"></button><span></span>
    <button id="c1" aria-label="left"><img alt="candidate left"></button>
    <img id="current" alt="current image">
    <button id="c0" aria-label="right"><img alt="candidate right"></button>
    <span></span><button id="c3" aria-label="down"><img alt="candidate down"></button><span></span>
  </div>
  <p class="controls"><button id="undo">Undo last pick</button>
     <button id="finish">I am satisfied</button></p>
  <p>Your path:</p><div id="path"></div>
</section>
<section id="final" class="hidden">
  <h2>Your image</h2><img id="final-image" alt="your image">
  <p id="description"></p>
  <p><a id="download" download="pirtune.png">Download it</a> · <a href="/">Start again</a></p>
</section>
<script>
let state = null, picks = [], busy = false;
const $ = id => document.getElementById(id);
function api(path, body) {
  const options = body === undefined ? {} : {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  return fetch(path, options).then(r => r.json().then(data => {
    if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail
                                                               : JSON.stringify(data.detail));
    return data;
  }));
}
function act(promise) {     // one request at a time; errors shown, never swallowed
  busy = true;
  $("error").classList.add("hidden");
  return promise.catch(err => { $("error").textContent = err.message;
                                $("error").classList.remove("hidden"); })
                .finally(() => { busy = false; });
}
function show(s) {
  state = s;
  $("round").textContent = s.round;
  $("current").src = s.current;
  s.candidates.forEach((url, i) => { document.querySelector("#c" + i + " img").src = url; });
}
function drawPath() {
  $("path").replaceChildren(...picks.map(src => Object.assign(new Image(), {src, alt: ""})));
}
function snapshot(img) {    // the path keeps the pixels: past rounds' URLs are not served
  const canvas = Object.assign(document.createElement("canvas"),
                               {width: img.naturalWidth, height: img.naturalHeight});
  canvas.getContext("2d").drawImage(img, 0, 0);
  return canvas.toDataURL("image/png");
}
function choose(i) {
  if (!state || busy) return;
  const src = snapshot(document.querySelector("#c" + i + " img"));
  act(api("/api/sessions/" + state.session_id + "/choices", {round: state.round, index: i})
    .then(s => { picks.push(src); drawPath(); show(s); }));
}
function undo() {
  if (!state || busy || picks.length === 0) return;
  act(api("/api/sessions/" + state.session_id + "/undo", {})
    .then(s => { picks.pop(); drawPath(); show(s); }));
}
function finish() {
  if (!state || busy) return;
  act(api("/api/sessions/" + state.session_id + "/finish", {}).then(s => {
    $("final-image").src = s.current;
    $("download").href = s.current;
    $("description").textContent = s.description;
    $("session").classList.add("hidden");
    $("final").classList.remove("hidden");
  }));
}
api("/api/info").then(info => info.classes.forEach((name, i) =>
  $("classes").append(new Option(name, i))));
$("start").addEventListener("submit", e => {
  e.preventDefault();
  const form = new FormData(e.target);
  act(api("/api/sessions", {image_class: Number(form.get("image_class")),
                            algorithm: form.get("algorithm"), seed: Date.now() % 2147483647})
    .then(s => { $("start").classList.add("hidden");
                 $("session").classList.remove("hidden"); show(s); }));
});
[0, 1, 2, 3].forEach(i => $("c" + i).addEventListener("click", () => choose(i)));
$("undo").addEventListener("click", undo);
$("finish").addEventListener("click", finish);
document.addEventListener("keydown", e => {
  const keys = {ArrowRight: 0, ArrowLeft: 1, ArrowUp: 2, ArrowDown: 3};
  if ($("session").classList.contains("hidden")) return;
  if (e.key in keys) { e.preventDefault(); choose(keys[e.key]); }
  if (e.key === "Backspace") { e.preventDefault(); undo(); }
  if (e.key === "Enter") { e.preventDefault(); finish(); }
});
</script>
</body>
</html>
"""
