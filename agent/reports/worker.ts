/** The report worker thread (see reports.ts): reads and parses one report file per message. */
import { readFile } from "node:fs/promises";
import { parentPort } from "node:worker_threads";
import { runFromReport } from "./parse";

const port = parentPort;
if (!port) throw new Error("worker.js runs only as a worker thread");

port.on("message", (message: { id: number; path: string }) => {
  readFile(message.path, "utf8")
    .then((text) => port.postMessage({ id: message.id, run: runFromReport(text) }))
    .catch((err: Error) => port.postMessage({ id: message.id, error: err.message }));
});
