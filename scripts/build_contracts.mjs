#!/usr/bin/env node
// Compile resources/contracts/*.sol with solc-js (tools/node_modules/solc) into resources/contracts/<Name>.json (shipped: the app deploys it on its local chain)
// ({contractName, compiler, abi, bytecode, sourceSha256}). The built JSON is committed so the app never
// needs Node at runtime; tests compare it with a fresh compile when solc-js is installed.
// Usage: node scripts/build_contracts.mjs [--check]   (--check: exit 1 if the committed JSON differs)
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync, readdirSync, renameSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(repo, "tools", "package.json"));
let solc;
try {
  solc = require("solc");
} catch (e) {
  console.error("solc-js is not installed: run scripts/system-deps.sh (it installs it into tools/node_modules).");
  process.exit(2);
}
const check = process.argv.includes("--check");
const srcDir = path.join(repo, "resources", "contracts");
const outDir = srcDir;
const sources = {};
for (const f of readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: readFileSync(path.join(srcDir, f), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "shanghai",
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
mkdirSync(outDir, { recursive: true });
let differs = false;
for (const [file, contracts] of Object.entries(output.contracts)) {
  const sha = createHash("sha256").update(sources[file].content).digest("hex");
  for (const [name, c] of Object.entries(contracts)) {
    const built = {
      contractName: name,
      sourceName: file,
      sourceSha256: sha,
      compiler: `solc-js ${solc.version()}`,
      settings: input.settings,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
    };
    const text = JSON.stringify(built, null, 2) + "\n";
    const target = path.join(outDir, `${name}.json`);
    if (check) {
      const old = existsSync(target) ? readFileSync(target, "utf8") : "";
      if (old !== text) {
        console.error(`${path.relative(repo, target)} differs from a fresh compile`);
        differs = true;
      }
      continue;
    }
    const tmp = `${target}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, target);
    console.log(`built ${path.relative(repo, target)} (${(c.evm.bytecode.object.length / 2) | 0} bytes)`);
  }
}
process.exit(differs ? 1 : 0);
