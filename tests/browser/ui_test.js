// Browser tests of the web UI (issue 17), run by tests/integration/test_browser.py:
// Debian's chromium, headless, driven by puppeteer-core (no browser download).
//
//   node ui_test.js <scenario> <base URL> [token]
//
// The Python side owns mailport, SMTP (smtplib) and a local HTTP server that
// must never be reached. This script asks it for those over stdin/stdout, one
// JSON line each way: {"ask":"send","kind":"plain",...} -> {"id":...}. It ends
// with {"result":"ok"} or {"result":"fail","error":"..."} and the exit code.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");
const puppeteer = require("puppeteer-core");

const [scenario, base, token] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
const replies = [];
let waiting = null;
lines.on("line", (l) => {
  if (waiting) { const w = waiting; waiting = null; w(JSON.parse(l)); } else replies.push(JSON.parse(l));
});
function ask(q) {
  process.stdout.write(JSON.stringify(Object.assign({ ask: q.ask }, q)) + "\n");
  if (replies.length) return Promise.resolve(replies.shift());
  return new Promise((res) => { waiting = res; });
}
function fail(msg) { throw new Error(msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function rows(page) {
  return page.$$eval("#rows tr", (trs) => trs.map((tr) => ({
    id: tr.dataset.id, subject: tr.querySelector(".subject").textContent,
    att: tr.querySelector(".att").textContent, selected: tr.classList.contains("selected") })));
}

// Within 5 s, the frame `match` picks shows an <img> of the cid message's size.
async function cidImageShown(page, cid, match, what) {
  const t1 = Date.now();
  let shown = null;
  while (Date.now() - t1 < 5000) {
    const frame = page.frames().find(match);
    if (frame) {
      shown = await frame.evaluate(() => {
        const img = document.querySelector("img");
        return img && img.complete ? [img.naturalWidth, img.naturalHeight] : null;
      }).catch(() => null);
      if (shown && shown[0] > 0) break;
    }
    await sleep(100);
  }
  if (!shown || shown[0] !== cid.width || shown[1] !== cid.height)
    fail(what + ": " + JSON.stringify(shown));
}

async function waitRows(page, pred, what, timeout = 5000) {
  const t0 = Date.now();
  for (;;) {
    const r = await rows(page);
    if (pred(r)) return r;
    if (Date.now() - t0 > timeout) fail(what + ": rows are " + JSON.stringify(r));
    await sleep(50);
  }
}

async function openPage(browser, errors) {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  page.on("pageerror", (e) => errors.push("pageerror: " + e.message));
  page.on("dialog", (d) => d.accept());
  await page.goto(base, { waitUntil: "load" });
  return page;
}

async function waitLive(page) {
  await page.waitForFunction(() => document.getElementById("live").textContent === "live",
    { timeout: 5000 });
}

// ---- scenarios --------------------------------------------------------------

const scenarios = {
  // Loads with no console error; a message sent with smtplib shows up within
  // 2 s without a reload, and the tab title counts it.
  async live(browser) {
    const errors = [];
    const page = await openPage(browser, errors);
    await waitLive(page);
    await page.evaluate(() => { window.__sameDocument = true; });
    const { id } = await ask({ ask: "send", kind: "plain", subject: "Hello live" });
    const t0 = Date.now();
    await waitRows(page, (r) => r.some((x) => x.id === id && x.subject === "Hello live"),
      "live message", 2000);
    const took = Date.now() - t0;
    if (!(await page.evaluate(() => window.__sameDocument === true))) fail("the page reloaded");
    const title = await page.title();
    if (title !== "(1) mailport") fail("title " + JSON.stringify(title));
    const total = await page.$eval("#total", (e) => e.textContent);
    if (total !== "1 message") fail("total " + total);
    if (errors.length) fail("console errors: " + errors.join("; "));
    return { took };
  },

  // An HTML message with a script, an onerror handler and a remote image: none
  // runs or loads (the local server counts requests), the marker stays unset.
  async sandbox(browser) {
    const errors = [];
    const page = await openPage(browser, errors);
    await waitLive(page);
    const { id } = await ask({ ask: "send", kind: "evil" });
    await waitRows(page, (r) => r.some((x) => x.id === id), "evil message");
    await page.click('#rows tr[data-id="' + id + '"]');
    await page.waitForFunction(() => {
      const f = document.getElementById("v-html");
      return f.getAttribute("src") && f.getAttribute("src").endsWith("/html");
    }, { timeout: 5000 });
    const sandbox = await page.$eval("#v-html", (f) => f.getAttribute("sandbox"));
    if (sandbox !== "") fail("iframe sandbox attribute " + JSON.stringify(sandbox));
    // The frame has loaded its document (the text of the message is there).
    let frame = null;
    const t0 = Date.now();
    while (!frame && Date.now() - t0 < 5000) {
      frame = page.frames().find((f) => f.url().includes("/messages/") && f.url().endsWith("/html"));
      if (frame) {
        const txt = await frame.evaluate(() => document.body ? document.body.textContent : "").catch(() => "");
        if (!txt.includes("visible text")) frame = null;
      }
      if (!frame) await sleep(50);
    }
    if (!frame) fail("the HTML frame never showed the message");
    await sleep(1500); // time for anything that would run or load
    const marker = await frame.evaluate(() => [typeof window.marker, document.body.getAttribute("data-marker")]);
    if (marker[0] !== "undefined" || marker[1] !== null) fail("marker set: " + JSON.stringify(marker));
    const top = await page.evaluate(() => [typeof window.marker, document.title]);
    if (top[0] !== "undefined" || top[1].includes("PWNED")) fail("marker in the page: " + JSON.stringify(top));
    const { hits } = await ask({ ask: "hits" });
    if (hits !== 0) fail("the local server got " + hits + " request(s)");
    return {};
  },

  // An attachment downloaded through the UI is byte-identical; a cid: image shows.
  async attachments(browser) {
    const errors = [];
    const page = await openPage(browser, errors);
    await waitLive(page);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mailport-dl-"));
    const cdp = await page.createCDPSession();
    await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir });
    const sent = await ask({ ask: "send", kind: "attachment" });
    await waitRows(page, (r) => r.some((x) => x.id === sent.id && x.att !== ""), "attachment mark");
    await page.click('#rows tr[data-id="' + sent.id + '"]');
    await page.waitForSelector("#v-attachments a.attachment", { timeout: 5000 });
    const label = await page.$eval("#v-attachments a.attachment", (a) => a.textContent);
    if (!label.startsWith(sent.filename)) fail("attachment link " + label);
    await page.click("#v-attachments a.attachment");
    const file = path.join(dir, sent.filename);
    let got;
    try {
      const t0 = Date.now();
      while (!fs.existsSync(file) && Date.now() - t0 < 10000) await sleep(100);
      if (!fs.existsSync(file)) fail("no download: " + JSON.stringify(fs.readdirSync(dir)));
      got = require("crypto").createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    if (got !== sent.sha256) fail("downloaded bytes differ");

    const cid = await ask({ ask: "send", kind: "cid" });
    await waitRows(page, (r) => r.some((x) => x.id === cid.id), "cid message");
    await page.click('#rows tr[data-id="' + cid.id + '"]');
    await cidImageShown(page, cid, (f) => f.url().includes(cid.id) && f.url().endsWith("/html"),
      "cid image not shown");
    return {};
  },

  // 50 a page: Older and Newer move through the list; a new message while an
  // older page is shown keeps that page where it was.
  async paging(browser) {
    const errors = [];
    const page = await openPage(browser, errors);
    await waitLive(page);
    const { ids } = await ask({ ask: "bulk", n: 55 });
    await waitRows(page, (r) => r.length === 50 && r[0].id === ids[54], "first page", 10000);
    const pageText = () => page.$eval("#page", (e) => e.textContent);
    if ((await pageText()) !== "1\u201350") fail("page label " + (await pageText()));
    if (!(await page.$eval("#newer", (b) => b.disabled))) fail("Newer enabled on the first page");
    await page.click("#older");
    await waitRows(page, (r) => r.length === 5 && r[4].id === ids[0], "second page");
    if ((await pageText()) !== "51\u201355") fail("page label " + (await pageText()));
    if (!(await page.$eval("#older", (b) => b.disabled))) fail("Older enabled on the last page");
    await ask({ ask: "send", kind: "plain", subject: "while on page 2" });
    await page.waitForFunction(() => document.getElementById("total").textContent === "56 messages",
      { timeout: 5000 });
    await waitRows(page, (r) => r.length === 5 && r[4].id === ids[0], "page 2 unchanged");
    await page.click("#newer");
    await waitRows(page, (r) => r.length === 50 && r[0].subject === "while on page 2", "back to page 1");
    if (errors.length) fail("console errors: " + errors.join("; "));
    return {};
  },

  // Keys move the selection, Delete deletes one, "Delete all" all; the list
  // follows (and the server agrees).
  async delete(browser) {
    const errors = [];
    const page = await openPage(browser, errors);
    await waitLive(page);
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await ask({ ask: "send", kind: "plain", subject: "del " + i })).id);
    await waitRows(page, (r) => r.length === 3, "three rows");
    await page.keyboard.press("j");
    await waitRows(page, (r) => r[0].selected && r[0].id === ids[2], "j selects the newest");
    await page.keyboard.press("ArrowDown");
    await waitRows(page, (r) => r[1].selected, "ArrowDown selects the next");
    await page.keyboard.press("k");
    await waitRows(page, (r) => r[0].selected, "k goes back");
    await page.waitForFunction((id) => document.getElementById("v-meta").textContent.includes(id),
      { timeout: 5000 }, ids[2]);
    await page.keyboard.press("Delete");
    await waitRows(page, (r) => r.length === 2 && !r.some((x) => x.id === ids[2]), "Delete removes it");
    const { total } = await ask({ ask: "total" });
    if (total !== 2) fail("server total after Delete: " + total);
    // Deleted elsewhere (the API): the list follows through /events.
    await ask({ ask: "delete", id: ids[0] });
    await waitRows(page, (r) => r.length === 1 && r[0].id === ids[1], "list follows an API delete");
    await ask({ ask: "send", kind: "plain", subject: "one more" });
    await waitRows(page, (r) => r.length === 2, "new one");
    await page.click("#delete-all");
    await waitRows(page, (r) => r.length === 0, "Delete all empties the list");
    const after = await ask({ ask: "total" });
    if (after.total !== 0) fail("server total after Delete all: " + after.total);
    const shownTotal = await page.$eval("#total", (e) => e.textContent);
    if (shownTotal !== "0 messages") fail("total shown " + shownTotal);
    return {};
  },

  // With SMTPD_HTTP_TOKEN: the UI asks once, keeps it for the session, and
  // both the API and /events work with it.
  async token(browser) {
    const errors = [];
    const page = await openPage(browser, errors);
    await page.waitForSelector("#login:not([hidden])", { timeout: 5000 });
    await page.type("#token", "wrong-token");
    await page.click("#login-form button");
    await page.waitForSelector("#login-error:not([hidden])", { timeout: 5000 });
    await page.$eval("#token", (e) => { e.value = ""; });
    await page.type("#token", token);
    await page.click("#login-form button");
    await page.waitForSelector("#login[hidden]", { timeout: 5000 });
    await waitLive(page);
    const { id } = await ask({ ask: "send", kind: "plain", subject: "with token" });
    await waitRows(page, (r) => r.some((x) => x.id === id), "message with token", 2000);
    const kept = await page.evaluate(() => sessionStorage.getItem("mailport.token"));
    if (kept !== token) fail("token not kept in sessionStorage");
    // A reload in the same tab does not ask again.
    await page.reload({ waitUntil: "load" });
    await waitRows(page, (r) => r.some((x) => x.id === id), "after reload");
    if (!(await page.$eval("#login", (e) => e.hidden))) fail("asked again after reload");
    // An iframe cannot send the token: the UI shows the HTML from memory, its
    // cid: image fetched with the token, scripts still sandboxed.
    const cid = await ask({ ask: "send", kind: "cid" });
    await waitRows(page, (r) => r.some((x) => x.id === cid.id), "cid message");
    await page.click('#rows tr[data-id="' + cid.id + '"]');
    await cidImageShown(page, cid, (f) => f.url() === "about:srcdoc",
      "cid image not shown with a token");
    const sandbox = await page.$eval("#v-html", (f) => f.getAttribute("sandbox"));
    if (sandbox !== "") fail("iframe sandbox attribute " + JSON.stringify(sandbox));
    return {};
  },
};

// puppeteer starts chromium in a process group of its own: when the Python side
// gives up on us (SIGTERM, or our stdin closes), the browser must go too.
let browser = null;
let finished = false;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "mailport-chromium-"));
function bail() {
  try { if (browser && browser.process()) browser.process().kill("SIGKILL"); } catch (e) { /* gone */ }
  // A moment for the browser's processes to stop writing into the profile.
  setTimeout(() => {
    try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* best effort */ }
    process.exit(2);
  }, 500);
}
process.on("SIGTERM", bail);
process.on("uncaughtException", (e) => { process.stderr.write(String(e && e.stack || e) + "\n"); bail(); });
lines.on("close", () => { if (!finished) bail(); });

(async () => {
  let out;
  try {
    browser = await puppeteer.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
      userDataDir: profile,
    });
    if (!scenarios[scenario]) fail("no scenario " + scenario);
    const extra = await scenarios[scenario](browser);
    out = Object.assign({ result: "ok" }, extra);
  } catch (e) {
    out = { result: "fail", error: String(e && e.stack || e) };
  } finally {
    if (browser) await browser.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
  finished = true;
  process.stdout.write(JSON.stringify(out) + "\n");
  lines.close();
  process.exit(out.result === "ok" ? 0 : 1);
})();
