// Drives Tencent's unmodified web SDK (@tencentcloud/chat) from the command line, for
// tests/test_sdk_bridge.py. Usage:
//
//   node driver.mjs <proxyServer URL> <SDKAppID>
//
// then one JSON command per line on stdin; every answer and SDK event is one JSON line on
// stdout:
//   {"id":1,"call":"login","args":{"userID":"alice","userSig":"..."}}
//     -> {"id":1,"ok":true,"data":{...}}   or {"id":1,"ok":false,"code":70001,"message":"..."}
//   {"id":2,"call":"sendText","args":{"to":"live-1","type":"GROUP","text":"hi"}}
//     (createTextMessage + sendMessage; type GROUP or C2C)
//   {"id":3,"call":"exit"}
// Any other "call" is a method of the SDK instance; "args" is its one argument (or
// "argv" a list of arguments). Events: {"event":"onMessageReceived","data":...}.
// Nothing here changes how the SDK talks: it only sets globalThis.WebSocket (the `ws`
// package) and proxyServer, as an app would.

import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
globalThis.WebSocket = require("ws").WebSocket;
console.log = (...a) => console.error(...a); // SDK logs to stderr: stdout is JSON
const TencentCloudChat = require("@tencentcloud/chat");

const [proxyServer, sdkAppID] = process.argv.slice(2);
if (!proxyServer || !sdkAppID) {
  console.error("usage: node driver.mjs <proxyServer> <SDKAppID>");
  process.exit(2);
}

const out = (doc) => process.stdout.write(JSON.stringify(doc, plain) + "\n");

// Messages and profiles are class instances with cycles and big internals: print only
// plain data, and drop what cannot be printed.
function plain(key, value) {
  if (typeof value === "function") return undefined;
  if (key.startsWith("_")) return undefined;
  return value;
}

const chat = TencentCloudChat.create({ SDKAppID: Number(sdkAppID), proxyServer });
chat.setLogLevel(Number(process.env.SDK_LOG_LEVEL ?? 4)); // 4: no SDK log lines

for (const name of Object.values(TencentCloudChat.EVENT)) {
  chat.on(name, (ev) => {
    let data = ev?.data;
    if (name === TencentCloudChat.EVENT.MESSAGE_RECEIVED) {
      data = data.map((m) => ({
        ID: m.ID, type: m.type, conversationType: m.conversationType, to: m.to,
        from: m.from, flow: m.flow, payload: m.payload, sequence: m.sequence,
        random: m.random, time: m.time, nick: m.nick, avatar: m.avatar,
        priority: m.priority, cloudCustomData: m.cloudCustomData,
        conversationID: m.conversationID,
      }));
    }
    try {
      out({ event: name, data });
    } catch {
      out({ event: name, data: String(data) });
    }
  });
}

function errorOf(err) {
  return { ok: false, code: err?.code ?? null, message: String(err?.message ?? err) };
}

async function run(cmd) {
  const args = cmd.args ?? {};
  switch (cmd.call) {
    case "exit":
      setTimeout(() => process.exit(0), 50);
      return { ok: true };
    case "sendText": {
      const type = args.type === "C2C" ? TencentCloudChat.TYPES.CONV_C2C
        : TencentCloudChat.TYPES.CONV_GROUP;
      const message = chat.createTextMessage({
        to: args.to, conversationType: type, payload: { text: args.text },
        priority: args.priority, cloudCustomData: args.cloudCustomData,
      });
      const res = await chat.sendMessage(message);
      const m = res.data.message;
      return { ok: true, data: { message: { ID: m.ID, to: m.to, from: m.from,
        sequence: m.sequence, random: m.random, time: m.time, status: m.status,
        payload: m.payload } } };
    }
    default: {
      const fn = chat[cmd.call];
      if (typeof fn !== "function") return { ok: false, code: null, message: "no such call" };
      const res = await fn.apply(chat, cmd.argv ?? [args]);
      return { ok: true, data: res?.data ?? null, code: res?.code ?? 0 };
    }
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ id: null, ok: false, code: null, message: `bad command: ${err}` });
    return;
  }
  let result;
  try {
    result = await run(cmd);
  } catch (err) {
    result = errorOf(err);
  }
  try {
    out({ id: cmd.id ?? null, ...result });
  } catch (err) {
    out({ id: cmd.id ?? null, ok: result.ok, code: result.code ?? null,
          message: `unprintable result: ${err}` });
  }
});
lines.on("close", () => process.exit(0));
