/**
 * Runs a Pulumi program under `pulumi.runtime.setMocks` and records what each resource was
 * registered with, including its dependencies (which the mocks' own callback does not see).
 */
import * as pulumi from "@pulumi/pulumi";

export interface Registered {
  type: string;
  name: string;
  urn: string;
  inputs: Record<string, unknown>;
  dependencies: string[];
}

type NewState = (args: pulumi.runtime.MockResourceArgs) => Record<string, unknown>;

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** A secret reaches mocks wrapped; this unwraps it (anywhere inside the value) and says whether it was. */
export function unwrapSecret(value: unknown): { value: unknown; secret: boolean } {
  if (value !== null && typeof value === "object" && (value as Record<string, unknown>)[SECRET_SIG] !== undefined) {
    return { value: (value as { value: unknown }).value, secret: true };
  }
  return { value, secret: false };
}

export async function mockProgram(
  project: string,
  config: Record<string, unknown>,
  newState: NewState,
): Promise<Registered[]> {
  const stack = "test";
  const registered: Registered[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const state = newState(args);
        return { id: String(state.id ?? `${args.name}-id`), state };
      },
      call: (args) => args.inputs,
    },
    project,
    stack,
  );
  for (const [key, value] of Object.entries(config))
    pulumi.runtime.setConfig(
      `${project}:${key}`.replace(/^[^:]+:(\w+:)/, "$1"),
      typeof value === "string" ? value : JSON.stringify(value),
    );
  // The mock monitor is internal to Pulumi; wrap its registerResource to see dependencies too.
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(req: RegisterRequest, cb: unknown): unknown;
  };
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    registered.push({
      type: req.getType(),
      name: req.getName(),
      urn: `urn:pulumi:${stack}::${project}::${req.getType()}::${req.getName()}`,
      inputs: req.getObject()?.toJavaScript() ?? {},
      dependencies: req.getDependenciesList(),
    });
    return original(req, cb);
  };
  return registered;
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
  getDependenciesList(): string[];
}

/** An output's value, once known. */
export function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) =>
    output.apply((value) => {
      resolve(value);
      return value;
    }),
  );
}
