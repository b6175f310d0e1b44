// Browser test of the support widget against a running `frontdesk serve`.
//
//   usage: node tests/e2e/widget.mjs BASE_URL SCREENSHOT_PATH [API_KEY]
//   env:   FD_QUESTION (default "How long does a refund take?"), FD_TIMEOUT_MS (default 120000)
//
// Drives Debian's chromium through playwright-core (no bundled browser download): reaches the
// input by keyboard only, asks a question, checks the cited answer and a source passage, takes
// a screenshot, then asks for a person and checks the hand-off. Prints one JSON line on success;
// on failure prints one reason line to stderr, saves SCREENSHOT_PATH as *.fail.png, exits 1.
//
// API_KEY says the server was started with a key: the page must then carry a (widget) key in
// its frontdesk-key meta. The widget itself authenticates with that, as a customer's would.

import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const [baseArg, screenshotPath, apiKey] = process.argv.slice(2);
if (!baseArg || !screenshotPath) {
  console.error("usage: node tests/e2e/widget.mjs BASE_URL SCREENSHOT_PATH [API_KEY]");
  process.exit(2);
}
const baseUrl = baseArg.replace(/\/+$/, "");
const question = process.env.FD_QUESTION || "How long does a refund take?";
const timeoutMs = Number(process.env.FD_TIMEOUT_MS || 120000);

// Message bubbles only: passages inside a bubble carry a data-state of their own.
const BUBBLES = "#fd-log > [data-state]";

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function failureScreenshotPath(path) {
  return /\.png$/i.test(path) ? path.replace(/\.png$/i, ".fail.png") : path + ".fail.png";
}

// Wait for the newest assistant bubble after `previousCount` to leave the streaming state.
async function waitForAnswer(page, previousCount, what) {
  try {
    await page.waitForFunction(
      ([selector, count]) => {
        const bubbles = document.querySelectorAll(selector);
        if (bubbles.length <= count) return false;
        return bubbles[bubbles.length - 1].dataset.state !== "streaming";
      },
      [BUBBLES, previousCount],
      { timeout: timeoutMs, polling: 100 },
    );
  } catch (error) {
    throw new CheckFailed(`no finished ${what} within ${timeoutMs} ms`);
  }
  // Pin the bubble by id: a positional locator would drift as later messages arrive.
  const id = await page.locator(BUBBLES).last().getAttribute("id");
  check(id, `the ${what} bubble has no id`);
  const bubble = page.locator("#" + id);
  const state = await bubble.getAttribute("data-state");
  const text = ((await bubble.locator(".fd-text").textContent()) || "").trim();
  check(state === "done", `${what} ended in state "${state}": ${text}`);
  return { bubble, text };
}

async function main() {
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  } catch (error) {
    console.error(`cannot launch chromium at ${CHROMIUM} (${error.message.split("\n")[0]}); ` +
      "install Debian's chromium: apt-get install -y chromium");
    process.exit(1);
  }

  const pageErrors = [];
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1024, height: 860 } });
    page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(error.message));

    const response = await page.goto(baseUrl + "/", { waitUntil: "load", timeout: 30000 });
    check(response && response.ok(), `GET ${baseUrl}/ answered ${response ? response.status() : "nothing"}`);
    const pageKey = await page.locator('meta[name="frontdesk-key"]').getAttribute("content");
    check(!/__FRONTDESK_/.test(await page.content()), "the page still contains __FRONTDESK_ placeholders");
    if (apiKey) check((pageKey || "").length > 0, "the server has a key but the page's frontdesk-key meta is empty");

    // Keyboard only: the input must be reachable with Tab from the top of the page.
    let focused = "";
    for (let presses = 0; presses < 10 && focused !== "fd-input"; presses += 1) {
      await page.keyboard.press("Tab");
      focused = await page.evaluate(() => (document.activeElement ? document.activeElement.id : ""));
    }
    check(focused === "fd-input", "#fd-input is not reachable within 10 Tab presses");

    const before = await page.locator(BUBBLES).count();
    await page.keyboard.type(question);
    await page.keyboard.press("Enter");
    const { bubble, text: answerText } = await waitForAnswer(page, before, "answer");
    check(answerText.length > 0, "the answer bubble is empty");
    check(!(await bubble.evaluate((node) => node.classList.contains("handoff"))),
      `the question was handed off instead of answered: ${answerText}`);

    // Focus goes back to the input so the customer can type the next question at once.
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === "fd-input",
      null, { timeout: 2000 }).catch(() => { throw new CheckFailed("focus did not return to #fd-input after the answer"); });

    const links = bubble.locator("a.citation");
    const citations = (await links.allTextContents()).map((label) => label.trim());
    check(citations.length > 0, `the answer has no citation links: ${answerText}`);
    check(citations.every((label) => label.length > 0), "a citation link has no text");

    const first = links.first();
    const href = await first.getAttribute("href");
    if (href === "#") {
      await first.click();
      const passage = bubble.locator(".fd-passage").first();
      try {
        await page.waitForFunction(
          (node) => !node.hidden && node.dataset.state !== "loading",
          await passage.elementHandle(), { timeout: 15000 },
        );
      } catch (error) {
        throw new CheckFailed("the first citation's passage did not load within 15 s");
      }
      const state = await passage.getAttribute("data-state");
      const passageText = ((await passage.locator(".fd-passage-text").textContent().catch(() => "")) || "").trim();
      check(state === "loaded" && passageText.length > 0,
        `the first citation's passage did not appear: ${((await passage.textContent()) || "").trim()}`);
    } else {
      // A public help-centre link: opening it needs the network, so only its shape is checked.
      check(/^https?:\/\//.test(href || ""), `the first citation links to "${href}"`);
      check((await first.getAttribute("target")) === "_blank", "an external citation does not open in a new tab");
    }

    await page.screenshot({ path: screenshotPath, fullPage: true });

    const beforeHandoff = await page.locator(BUBBLES).count();
    await page.locator("#fd-handoff").click();
    const { bubble: handoffBubble } = await waitForAnswer(page, beforeHandoff, "hand-off");
    try {
      await page.locator(".handoff").last().waitFor({ state: "visible", timeout: 5000 });
    } catch (error) {
      throw new CheckFailed("no .handoff element after \"Talk to a person\"");
    }
    check(await handoffBubble.evaluate((node) => node.classList.contains("handoff")),
      "the reply to \"Talk to a person\" is not styled as a hand-off");
    const ticket = (await handoffBubble.getAttribute("data-ticket-id")) || "";
    check(ticket.length > 0, "the hand-off carries no ticket id");
    check(pageErrors.length === 0, `script errors on the page: ${pageErrors.join(" | ")}`);

    console.log(JSON.stringify({ ok: true, answer: answerText, citations, handoff_ticket: ticket }));
    await browser.close();
    return 0;
  } catch (error) {
    const reason = error instanceof CheckFailed ? error.message : `unexpected error: ${error.message.split("\n")[0]}`;
    const extra = pageErrors.length ? ` (page errors: ${pageErrors.join(" | ")})` : "";
    console.error(`widget test failed: ${reason}${extra}`);
    if (page) {
      await page.screenshot({ path: failureScreenshotPath(screenshotPath), fullPage: true }).catch(() => {});
    }
    await browser.close().catch(() => {});
    return 1;
  }
}

process.exit(await main());
