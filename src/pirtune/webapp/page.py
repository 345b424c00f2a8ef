"""The page people use: one HTML file with a little JavaScript, no build, no network.

The last pick (the start image before any) sits in the middle with the four
candidates around it on the two axes (right/left: +u/−u, up/down: +v/−v),
and under them how much they differ from it (/255). Click one, press an arrow
key, or Tab to one and press Enter; when the four cannot be told apart, the
"These look the same" button (or the S key) says so (``pirtune.search.feedback``:
the round is answered, the middle image stays, and new candidates come);
Backspace undoes the last answer; the
"I am satisfied" button finishes with the last picked image, shows it with a
one-line description and two downloads (the generator's size, and 8× larger
with the latent and class in the PNG's text). Enter only ever activates the
focused control, and a held key picks once.

A round is announced only when all its images have loaded, and picks wait for
that: the person always picks among the images on screen. The path below the
board is the start image and each pick with its round, from the server (it
stays on the final screen). The session id is in the address (``#session=…``),
so a reload continues the session. Errors read as sentences, with a "Try
again" button. The board fits a phone's width. A session whose search started
from earlier people's picks (``pirtune-serve --prior``) says so in one line.
"""

from urllib.parse import quote

# A landscape in 16 pixels: sky, hills, ground. Inline, so the page fetches nothing else.
FAVICON = "data:image/svg+xml," + quote(
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<rect width='16' height='10' fill='#88c'/>"
    "<path d='M0 12 5 6l4 4 3-3 4 5v4H0z' fill='#575'/></svg>", safe="=' ")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pirtune: find your image</title>
<link rel="icon" href="FAVICON">
<style>
  body { font-family: system-ui, sans-serif; margin: 1rem auto; padding: 0 .75rem;
         max-width: 44rem; color: #222; font-size: 1rem; line-height: 1.4; }
  h1 { font-size: 1.3rem; }
  #start label { display: inline-block; margin: 0 1rem .5rem 0; }
  #board { display: grid; grid-template-columns: repeat(3, 1fr); gap: .4rem;
           width: min(100%, 28rem); margin: .75rem auto; }
  #board img { display: block; width: 100%; aspect-ratio: 1; image-rendering: pixelated;
               border-radius: .4rem; }
  #board button { padding: 0; border: 3px solid transparent; border-radius: .6rem;
                  background: none; cursor: pointer; }
  #board button:focus-visible { border-color: #1a73e8; }
  /* Only where a pointer hovers: a touch screen keeps :hover on the tapped slot, which then
     holds the next round's image. */
  @media (hover: hover) { #board button:hover { border-color: #1a73e8; } }
  #current { border: 3px solid #888; border-radius: .6rem; box-sizing: border-box; }
  #board.loading { opacity: .6; cursor: progress; }
  #board.loading button { cursor: progress; }
  #step { color: #555; font-size: .95rem; }
  #stalled { background: #fff4d6; border-radius: .4rem; padding: .5rem .75rem; }
  .controls button, #error button, #start button { font-size: 1rem; padding: .4rem .8rem;
                                                    margin: 0 .5rem .5rem 0; }
  #path { display: flex; flex-wrap: wrap; gap: .3rem; }
  #path figure { margin: 0; text-align: center; font-size: .8rem; color: #555; }
  #path img { display: block; width: 3rem; height: 3rem; image-rendering: pixelated; }
  #final-image { width: min(100%, 16rem); aspect-ratio: 1; image-rendering: pixelated; }
  #error { color: #b00020; }
  .hidden { display: none; }
</style>
</head>
<body>
<h1>Find the image you want, one pick at a time</h1>
<form id="start" class="hidden">
  <p>Pick the image closest to what you want among the four around the middle one.
     Keep going until you are happy with it.</p>
  <label>Kind of scene <select name="image_class" id="classes"></select></label>
  <label>Search <select name="algorithm"><option value="preference">learning (fast)</option>
    <option value="axis">paper's axes</option><option value="random">random</option>
    </select></label>
  <button type="submit">Start</button>
</form>
<div id="error" role="alert" class="hidden"><p id="error-text"></p>
  <button id="retry" type="button">Try again</button></div>
<section id="session" class="hidden">
  <p id="head-start" class="hidden">Starting from what earlier people picked.</p>
  <p>Round <span id="round">1</span>: click the closest image, or press an arrow key
     (or Tab to an image and press Enter). If you cannot tell them apart, say so
     (or press S).</p>
  <div id="board">
    <span></span><button id="c2" aria-label="up"><img alt="candidate up"></button><span></span>
    <button id="c1" aria-label="left"><img alt="candidate left"></button>
    <img id="current" alt="current image">
    <button id="c0" aria-label="right"><img alt="candidate right"></button>
    <span></span><button id="c3" aria-label="down"><img alt="candidate down"></button><span></span>
  </div>
  <p class="controls"><button id="same" type="button" aria-keyshortcuts="s">These look
     the same</button></p>
  <p id="step"></p>
  <p id="stalled" class="hidden">The search has narrowed down as far as the eye can see:
     more picks would not change what you see. Finish with your last pick, or undo and
     go another way.</p>
  <p class="controls"><button id="undo">Undo last pick</button>
     <button id="finish">I am satisfied</button></p>
</section>
<section id="final" class="hidden">
  <h2>Your image</h2><img id="final-image" alt="your image: your last pick">
  <p id="description"></p>
  <p><a id="download" download="pirtune.png">Download it</a> ·
     <a id="download-large" download="pirtune-large.png">Download it 8× larger</a> ·
     <a href="/">Start again</a></p>
</section>
<section id="trail" class="hidden"><p>Your path:</p><div id="path"></div></section>
<script>
let state = null, busy = false, retry = null;
const $ = id => document.getElementById(id);

class Problem extends Error {}
async function api(path, body) {
  const options = body === undefined ? {} : {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  let response;
  try { response = await fetch(path, options); }
  catch {
    throw new Problem("We could not reach the server. Check your connection, then try again.");
  }
  const data = await response.json().catch(() => null);
  if (response.ok && data) return data;
  const status = response.status;
  if (status === 404 && path.startsWith("/api/sessions/")) {
    history.replaceState(null, "", "/");
    throw new Problem("This session no longer exists. Start a new one.");
  }
  if (status === 409) throw Object.assign(new Problem(
    "This session changed in another window; the page now shows where it stands."), {stale: true});
  if (status === 429) throw new Problem("Many new sessions were started here just now. " +
    "Try again in " + (response.headers.get("Retry-After") || "a few") + " seconds.");
  if (status >= 500 || !data)
    throw new Problem("Something went wrong on the server. Try again in a moment.");
  throw new Problem("The server could not take that request. Reload the page and try again.");
}
function load(url, alt, id) {   // an image, fully decoded
  const img = Object.assign(new Image(), {src: url, alt});
  if (id) img.id = id;
  return img.decode().then(() => img, () => {
    throw new Problem("An image did not load. Try again."); });
}
function act(action) {        // one action at a time; errors in words, with a retry
  if (busy) return;
  busy = true;
  $("board").classList.add("loading");
  $("error").classList.add("hidden");
  return action().catch(async err => {
    const stale = err.stale && state;    // show where the session stands now
    if (stale) await api(sessionUrl()).then(show).catch(() => {});
    $("error-text").textContent = err instanceof Problem ? err.message
      : "Something went wrong on this page. Try again.";
    retry = stale ? null : action;
    $("retry").classList.toggle("hidden", !retry);
    $("error").classList.remove("hidden");
    if (!state) $("start").classList.remove("hidden");
  }).finally(() => { busy = false; $("board").classList.remove("loading"); });
}
const sessionUrl = () => "/api/sessions/" + state.session_id;
async function drawPath(s) {
  const figures = await Promise.all(s.path.map(async step => {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = step.round === 0 ? "start" : step.round;
    figure.append(await load(step.url, step.round === 0 ? "start" : "pick " + step.round),
                  caption);
    return figure;
  }));
  return () => $("path").replaceChildren(...figures);
}
async function show(s) {      // swaps everything in at once, when every image has loaded
  history.replaceState(null, "", "#session=" + s.session_id);
  if (s.finished) return showFinal(s);
  const names = ["candidate right", "candidate left", "candidate up", "candidate down"];
  const [middle, ...candidates] = await Promise.all([
    load(s.current, "current image", "current"),
    ...s.candidates.map((url, i) => load(url, names[i]))]);
  const path = await drawPath(s);
  state = s;
  $("current").replaceWith(middle);
  candidates.forEach((img, i) => $("c" + i).replaceChildren(img));
  $("round").textContent = s.round;
  $("head-start").classList.toggle("hidden", !s.prior);
  $("step").textContent = "The candidates differ from the middle image (your last pick) " +
    "by about " + Math.round(s.difference) + "/255 a pixel.";
  $("stalled").classList.toggle("hidden", !s.stalled);
  candidates.forEach((_, i) => { $("c" + i).disabled = s.stalled; });
  $("same").disabled = s.stalled;
  path();
  for (const id of ["start", "final"]) $(id).classList.add("hidden");
  for (const id of ["session", "trail"]) $(id).classList.remove("hidden");
}
async function showFinal(s) {
  const last = s.path[s.path.length - 1];
  const image = await load(last.url, "your image: your last pick", "final-image");
  const path = await drawPath(s);
  state = s;
  $("final-image").replaceWith(image);
  $("download").href = s.final;
  $("download-large").href = s.final + "?scale=8";
  $("description").textContent = s.description;
  path();
  for (const id of ["start", "session"]) $(id).classList.add("hidden");
  for (const id of ["final", "trail"]) $(id).classList.remove("hidden");
}
function choose(i) {
  // The next round's image in this slot is another image: it must not inherit the ring.
  if (document.activeElement) document.activeElement.blur();
  if (state && !state.stalled)
    act(() => api(sessionUrl() + "/choices", {round: state.round, index: i}).then(show));
}
function same() {         // the four look alike: answer the round without a pick
  if (document.activeElement) document.activeElement.blur();
  if (state && !state.stalled)
    act(() => api(sessionUrl() + "/choices", {round: state.round, same: true}).then(show));
}
function undo() {
  // Any answered round, a pick or a "same", can be taken back.
  if (state && state.round > 1) act(() => api(sessionUrl() + "/undo", {}).then(show));
}
function finish() { if (state) act(() => api(sessionUrl() + "/finish", {}).then(show)); }

$("retry").addEventListener("click", () => { if (retry) act(retry); });
$("start").addEventListener("submit", e => {
  e.preventDefault();
  const form = new FormData(e.target);
  act(() => api("/api/sessions", {image_class: Number(form.get("image_class")),
                                  algorithm: form.get("algorithm"),
                                  seed: Date.now() % 2147483647}).then(show));
});
[0, 1, 2, 3].forEach(i => $("c" + i).addEventListener("click", () => choose(i)));
$("same").addEventListener("click", same);
$("undo").addEventListener("click", undo);
$("finish").addEventListener("click", finish);
document.addEventListener("keydown", e => {   // Enter is left to the focused control
  const keys = {ArrowRight: 0, ArrowLeft: 1, ArrowUp: 2, ArrowDown: 3};
  if ($("session").classList.contains("hidden") || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key in keys || e.key === "Backspace") e.preventDefault();
  if (e.repeat || busy) return;      // a held key picks once; nothing while loading
  if (e.key in keys) choose(keys[e.key]);
  if (e.key === "Backspace") undo();
  if (e.key === "s" || e.key === "S") same();
});
act(async () => {
  const info = await api("/api/info");
  info.classes.forEach((name, i) => $("classes").append(new Option(name, i)));
  const resume = new URLSearchParams(location.hash.slice(1)).get("session");
  if (resume) return api("/api/sessions/" + encodeURIComponent(resume)).then(show);
  $("start").classList.remove("hidden");
});
</script>
</body>
</html>
""".replace("FAVICON", FAVICON)
