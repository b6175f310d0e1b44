// frontdesk support widget: chat over POST /api/chat (Server-Sent Events read from fetch),
// sources on demand and hand-off to a person. Everything the server sends is treated as
// untrusted text: it only ever reaches the page through textContent and createElement.
(function () {
  "use strict";

  const log = document.getElementById("fd-log");
  const form = document.getElementById("fd-form");
  const input = document.getElementById("fd-input");
  const sendButton = document.getElementById("fd-send");
  const handoffButton = document.getElementById("fd-handoff");

  const apiKey = readApiKey();
  let conversationId = null;
  let busy = false;
  let bubbleCount = 0;

  function readApiKey() {
    const meta = document.querySelector('meta[name="frontdesk-key"]');
    const key = meta ? meta.getAttribute("content").trim() : "";
    // A page served without substitution still carries the placeholder; it is not a key.
    return key.startsWith("__FRONTDESK_") ? "" : key;
  }

  function apiHeaders(extra) {
    const headers = Object.assign({}, extra);
    if (apiKey) headers["Authorization"] = "Bearer " + apiKey;
    return headers;
  }

  // ---- DOM helpers -------------------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function isNearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollToBottom() {
    log.scrollTop = log.scrollHeight;
  }

  function addCustomerMessage(text) {
    const bubble = element("div", "fd-msg fd-msg-customer");
    bubble.appendChild(element("p", "fd-text", text));
    log.appendChild(bubble);
    scrollToBottom();
  }

  function addSystemNote(text) {
    log.appendChild(element("div", "fd-msg fd-msg-system", text));
    scrollToBottom();
  }

  // An assistant bubble starts in the "streaming" state with a typing indicator.
  function addAssistantBubble() {
    bubbleCount += 1;
    const bubble = element("div", "fd-msg fd-msg-assistant");
    bubble.id = "fd-answer-" + bubbleCount;
    bubble.dataset.state = "streaming";
    const text = element("p", "fd-text");
    const typing = element("span", "fd-typing");
    typing.setAttribute("role", "img");
    typing.setAttribute("aria-label", "The assistant is typing");
    for (let i = 0; i < 3; i += 1) typing.appendChild(element("span"));
    bubble.append(text, typing);
    log.appendChild(bubble);
    scrollToBottom();
    return bubble;
  }

  function appendDraft(bubble, piece) {
    const follow = isNearBottom();
    bubble.querySelector(".fd-text").textContent += piece;
    if (follow) scrollToBottom();
  }

  function showError(bubble, message) {
    bubble.dataset.state = "error";
    bubble.querySelector(".fd-typing")?.remove();
    bubble.querySelector(".fd-text").textContent = message;
    scrollToBottom();
  }

  // Answer text with [n] markers: the markers become small superscripts, the rest stays text.
  function fillAnswerText(container, text) {
    container.textContent = "";
    const marker = /\[(\d{1,3})\]/g;
    let last = 0;
    let match;
    while ((match = marker.exec(text)) !== null) {
      if (match.index > last) container.appendChild(document.createTextNode(text.slice(last, match.index)));
      container.appendChild(element("span", "fd-ref", match[0]));
      last = marker.lastIndex;
    }
    if (last < text.length) container.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderAnswer(bubble, answer) {
    if (answer && typeof answer.conversation_id === "string" && answer.conversation_id) {
      conversationId = answer.conversation_id;
    }
    bubble.querySelector(".fd-typing")?.remove();
    const text = answer && typeof answer.answer === "string" ? answer.answer : "";
    fillAnswerText(bubble.querySelector(".fd-text"), text);

    const citations = Array.isArray(answer && answer.citations) ? answer.citations : [];
    if (citations.length > 0) bubble.appendChild(renderSources(bubble.id, citations));
    if (answer && answer.handoff) renderHandoff(bubble, answer.ticket);

    bubble.dataset.state = "done";
    scrollToBottom();
  }

  // ---- sources -------------------------------------------------------------------------------

  function citationLabel(citation) {
    const title = String(citation.title || citation.path || "Source");
    let section = String(citation.section || "");
    // Sections are breadcrumbs that usually start with the title; don't say it twice.
    const prefix = title + " › ";
    if (section.startsWith(prefix)) section = section.slice(prefix.length);
    const n = citation.n !== undefined && citation.n !== null ? "[" + citation.n + "] " : "";
    return section && section !== title ? n + title + " — " + section : n + title;
  }

  // Only web links may leave the widget; anything else (javascript:, data:) is refused.
  function safeUrl(url) {
    if (typeof url !== "string" || url === "") return null;
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (_) {
      return null;
    }
  }

  function renderSources(bubbleId, citations) {
    const box = element("div", "fd-sources");
    const titleId = bubbleId + "-sources";
    const title = element("p", "fd-sources-title", "Sources");
    title.id = titleId;
    const list = element("ul", "fd-source-list");
    list.setAttribute("aria-labelledby", titleId);

    citations.forEach(function (citation, index) {
      const item = element("li");
      const link = element("a", "citation", citationLabel(citation));
      const url = safeUrl(citation.url);
      if (url) {
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener";
      } else {
        // No public page for this source: the passage itself is shown inline on demand.
        const passageId = bubbleId + "-passage-" + index;
        link.href = "#";
        link.setAttribute("aria-expanded", "false");
        link.setAttribute("aria-controls", passageId);
        const passage = element("div", "fd-passage");
        passage.id = passageId;
        passage.hidden = true;
        link.addEventListener("click", function (event) {
          event.preventDefault();
          togglePassage(link, passage, citation.chunk_id);
        });
        item.append(link, passage);
        list.appendChild(item);
        return;
      }
      item.appendChild(link);
      list.appendChild(item);
    });

    box.append(title, list);
    return box;
  }

  async function togglePassage(link, passage, chunkId) {
    if (passage.dataset.state === "loaded" || passage.dataset.state === "error") {
      const show = passage.hidden;
      passage.hidden = !show;
      link.setAttribute("aria-expanded", String(show));
      if (passage.dataset.state === "error" && show) loadPassage(passage, chunkId);
      return;
    }
    if (passage.dataset.state === "loading") return;
    passage.hidden = false;
    link.setAttribute("aria-expanded", "true");
    await loadPassage(passage, chunkId);
  }

  async function loadPassage(passage, chunkId) {
    passage.dataset.state = "loading";
    passage.textContent = "Loading the passage…";
    try {
      const response = await fetch("/api/sources/" + encodeURIComponent(chunkId), {
        headers: apiHeaders({ Accept: "application/json" }),
      });
      if (!response.ok) throw new Error(await errorMessage(response));
      const source = await response.json();
      passage.textContent = "";
      if (source.path) passage.appendChild(element("span", "fd-passage-path", source.path));
      passage.appendChild(element("p", "fd-passage-text", source.text || "(This passage is empty.)"));
      passage.dataset.state = "loaded";
    } catch (error) {
      passage.textContent = "Could not load this source: " + describe(error);
      passage.dataset.state = "error";
    }
  }

  // ---- hand-off ------------------------------------------------------------------------------

  function renderHandoff(bubble, ticket) {
    bubble.classList.add("handoff");
    const note = element("div", "fd-ticket");
    note.setAttribute("role", "note");
    if (ticket && ticket.id) {
      bubble.dataset.ticketId = String(ticket.id);
      const heading = element("p", "fd-ticket-title", "A person will follow up · ticket ");
      heading.appendChild(element("span", "fd-ticket-id", ticket.id));
      note.appendChild(heading);
      if (ticket.summary) note.appendChild(element("p", "fd-ticket-summary", ticket.summary));
    } else {
      note.appendChild(element("p", "fd-ticket-title", "A person will follow up on this conversation."));
    }
    bubble.appendChild(note);
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  function describe(error) {
    return error && error.message ? error.message : String(error);
  }

  // The server's error body is {"error": {"message", "type"}}; fall back to the status line.
  async function errorMessage(response) {
    let message = "";
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = String(body.error.message);
    } catch (_) {
      // Not JSON (a proxy's error page, say): the status is all there is to say.
    }
    if (response.status === 429) {
      if (!message) message = "The assistant is busy right now.";
      const retryAfter = parseInt(response.headers.get("Retry-After") || "", 10);
      if (Number.isFinite(retryAfter) && !/try again/i.test(message)) {
        message += " Please try again in " + retryAfter + " s.";
      }
    } else if (!message) {
      message = response.status === 401
        ? "This chat is not authorised to reach the support service."
        : "The support service answered with an error (HTTP " + response.status + ").";
    }
    return message;
  }

  // Incremental Server-Sent Events parser (event/data fields, blank line ends an event).
  function createSseParser(onEvent) {
    let buffer = "";
    let eventName = "";
    let dataLines = [];

    function processLine(line) {
      if (line === "") {
        if (dataLines.length > 0) onEvent(eventName || "message", dataLines.join("\n"));
        eventName = "";
        dataLines = [];
        return;
      }
      if (line.startsWith(":")) return; // comment / keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") eventName = value;
      else if (field === "data") dataLines.push(value);
    }

    return {
      push(text) {
        buffer += text;
        const newline = /\r\n|\r|\n/g;
        let start = 0;
        let match;
        while ((match = newline.exec(buffer)) !== null) {
          // A lone trailing CR may be the first half of a CRLF split across reads.
          if (match[0] === "\r" && newline.lastIndex === buffer.length) break;
          processLine(buffer.slice(start, match.index));
          start = newline.lastIndex;
        }
        buffer = buffer.slice(start);
      },
      finish() {
        if (buffer !== "") processLine(buffer.replace(/\r$/, ""));
        buffer = "";
        processLine("");
      },
    };
  }

  async function streamChat(text, bubble) {
    const response = await fetch("/api/chat", {
      method: "POST",
      headers: apiHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ message: text, conversation_id: conversationId, stream: true }),
    });
    if (!response.ok) {
      showError(bubble, await errorMessage(response));
      return;
    }
    const contentType = response.headers.get("Content-Type") || "";
    if (!contentType.includes("text/event-stream") || !response.body) {
      // A server may answer in one piece; accept the final answer object as it is.
      renderAnswer(bubble, await response.json());
      return;
    }

    let finished = false;
    const parser = createSseParser(function (name, data) {
      if (finished) return;
      let payload;
      try {
        payload = JSON.parse(data);
      } catch (_) {
        return; // a malformed event should not take the whole answer down
      }
      if (name === "token") {
        if (payload && typeof payload.text === "string") appendDraft(bubble, payload.text);
      } else if (name === "answer") {
        finished = true;
        renderAnswer(bubble, payload);
      } else if (name === "error") {
        finished = true;
        const message = payload && payload.error && payload.error.message;
        showError(bubble, message ? String(message) : "Something went wrong while answering.");
      }
    });

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.finish();
    if (!finished) showError(bubble, "The answer was cut off. Please try again.");
  }

  async function requestHandoff(bubble) {
    const response = await fetch("/api/handoff", {
      method: "POST",
      headers: apiHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
      body: JSON.stringify({ conversation_id: conversationId }),
    });
    if (!response.ok) {
      showError(bubble, await errorMessage(response));
      return;
    }
    renderAnswer(bubble, await response.json());
  }

  // ---- interaction ---------------------------------------------------------------------------

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    handoffButton.disabled = value;
    // Screen readers hear the finished answer once rather than every streamed token.
    log.setAttribute("aria-busy", String(value));
  }

  async function run(task) {
    setBusy(true);
    const bubble = addAssistantBubble();
    try {
      await task(bubble);
    } catch (error) {
      showError(bubble, "Could not reach the support service (" + describe(error) + "). Please try again.");
    } finally {
      if (bubble.dataset.state === "streaming") showError(bubble, "The answer was cut off. Please try again.");
      setBusy(false);
      input.focus();
    }
  }

  function submitQuestion() {
    if (busy) return;
    const text = input.value.trim();
    if (!text) {
      input.focus();
      return;
    }
    input.value = "";
    addCustomerMessage(text);
    run(function (bubble) { return streamChat(text, bubble); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submitQuestion();
  });

  input.addEventListener("keydown", function (event) {
    // Enter sends, Shift+Enter keeps the newline; never interrupt an IME composition.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitQuestion();
    }
  });

  handoffButton.addEventListener("click", function () {
    if (busy) return;
    addSystemNote("You asked to talk to a person.");
    run(requestHandoff);
  });
})();
