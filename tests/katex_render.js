// KaTeX for the tests, one process for many formulas: `node katex_render.js KATEX_DIR` reads one JSON array of
// LaTeX formulas per line of stdin and writes one JSON array per line of stdout, null where a formula rendered
// (display mode) and KaTeX's error where it did not. Strict: every LaTeX incompatibility is an error, except
// Unicode letters (a label such as "日本" or "σ"), which KaTeX renders as they are.
"use strict";
const katex = require(process.argv[2]);
const readline = require("readline");

const unicode = new Set(["unicodeTextInMathMode", "unknownSymbol", "symbolNotInFont"]);
const options = {displayMode: true, throwOnError: true, strict: (code) => (unicode.has(code) ? "ignore" : "error")};

function error(formula) {
  try {
    katex.renderToString(formula, options);
    return null;
  } catch (e) {
    return String(e.message);
  }
}

readline.createInterface({input: process.stdin}).on("line", (line) => {
  process.stdout.write(JSON.stringify(JSON.parse(line).map(error)) + "\n");
});
