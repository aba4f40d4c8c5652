// Safe Markdown for model answers: ALL HTML is escaped first, then a small subset is
// turned into fixed tags (paragraphs, **bold**, *italic*, `code`, fenced code, lists, and
// links to http(s) only, shown with their address). Nothing the model writes becomes markup.

/** Escape every character that means something in HTML text or a quoted attribute. */
export function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

// An http(s) address of already-escaped text: no quotes, brackets, spaces or asterisks.
const LINK = /\[([^\]\n]+)\]\((https?:\/\/[A-Za-z0-9\-._~:/?#@!$&;%+,=]+)\)/g;

function emphasis(escaped) {
  return escaped
    .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>");
}

function inline(escaped) {
  // Code spans first, so that nothing inside them is read as emphasis or a link.
  return escaped
    .split(/(`[^`\n]+`)/g)
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${part.slice(1, -1)}</code>`;
      const pieces = [];
      let last = 0;
      for (const m of part.matchAll(LINK)) {
        pieces.push(emphasis(part.slice(last, m.index)));
        const [, label, href] = m;
        pieces.push(
          `<a href="${href}" rel="noopener noreferrer" target="_blank">${emphasis(label)}</a>` +
            ` <span class="href">(${href})</span>`,
        );
        last = m.index + m[0].length;
      }
      pieces.push(emphasis(part.slice(last)));
      return pieces.join("");
    })
    .join("");
}

/** The answer as HTML built only from escaped text and the fixed tags above. */
export function renderMarkdown(text) {
  const lines = escapeHtml(text).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let paragraph = [];
  let list = null; // { tag: "ul" | "ol", items: [] }

  const flushParagraph = () => {
    if (paragraph.length) out.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
    paragraph = [];
  };
  const flushList = () => {
    if (list) {
      out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join("")}</${list.tag}>`);
    }
    list = null;
  };

  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    if (/^\s*```/.test(line)) {
      flushParagraph();
      flushList();
      const code = [];
      i += 1;
      // An unclosed fence (an answer still streaming) runs to the end.
      while (i < lines.length && !/^\s*```/.test(lines[i])) {
        code.push(lines[i]);
        i += 1;
      }
      // Focusable, so that a code block wider than the answer can be scrolled by keyboard.
      out.push(`<pre tabindex="0"><code>${code.join("\n")}</code></pre>`);
      continue;
    }
    const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
    if (bullet || numbered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (list && list.tag !== tag) flushList();
      if (!list) list = { tag, items: [] };
      list.items.push((bullet || numbered)[1]);
      continue;
    }
    if (!line.trim()) {
      flushParagraph();
      flushList();
      continue;
    }
    flushList();
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    if (heading) {
      flushParagraph();
      out.push(`<p><strong>${inline(heading[1])}</strong></p>`);
      continue;
    }
    paragraph.push(line);
  }
  flushParagraph();
  flushList();
  return out.join("");
}
