export * from "./protocol";
export * from "./errors";
export * from "./client";
export * from "./x509";
