/**
 * PuppetFirstRun's lifecycle: what the dynamic-provider host (through the runtime module) and the
 * provider plugin run for it. The program loads only the resource class (./first-run), which declares
 * the resource, and so none of this: not its input schema (zod), not espm's client.
 */
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { schemas } from "espm-sdk/protocol";
import { connectionSchema } from "./connection-schema";
import { withClient } from "./connection";
import { changedProperties, checkWith, defined, elapsed, inputSchemaOnce, poll, progress } from "./lifecycle";
import { type Lifecycle } from "./thin-provider";
import type { StackSettings } from "./settings";
import type { FirstRunState } from "./first-run";

const REPLACING = ["nodeName", "instanceId", "notBefore"] as const;
/** Reports are stored when the run ends, so the run's own start time may precede this create a little. */
const CLOCK_GRACE_MS = 60_000;

const inputSchema = inputSchemaOnce(() =>
  z.strictObject({
    nodeName: schemas.name,
    instanceId: z.string().min(1),
    timeoutMinutes: z
      .number()
      .positive()
      .max(24 * 60)
      .default(30),
    notBefore: z.iso.datetime({ offset: true }).optional(),
    connection: connectionSchema().optional(),
  }),
);

function noRunMessage(inputs: FirstRunState): string {
  return (
    `no Puppet run of ${inputs.nodeName} reached espm within ${inputs.timeoutMinutes} minutes. Check: the instance's console output ` +
    `(aws ec2 get-console-output --instance-id ${inputs.instanceId}) for the bootstrap's messages; that the instance reaches the Puppet master ` +
    "at the address and port its userdata names; and that Puppet Server stores reports (reports = store in puppet.conf's [server] section) " +
    "in the directory espm.ini's reportdir names, readable by espm."
  );
}

export const firstRunLifecycle = {
  inputSchema,
  replacing: REPLACING,

  async check(_olds: Record<string, unknown>, news: Record<string, unknown>): Promise<pulumi.dynamic.CheckResult> {
    const result = checkWith(inputSchema(), news);
    return result.failures.length ? { failures: result.failures } : { inputs: result.inputs };
  },

  async diff(_id: string, olds: FirstRunState, news: FirstRunState): Promise<pulumi.dynamic.DiffResult> {
    const replaces = changedProperties({ ...olds }, { ...news }, REPLACING);
    const changes = [...replaces, ...changedProperties({ ...olds }, { ...news }, ["timeoutMinutes"])];
    return { changes: changes.length > 0, replaces };
  },

  async create(
    inputs: FirstRunState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CreateResult<FirstRunState>> {
    return withClient(inputs.connection, settings?.espm, async (client) => {
      const started = Date.now();
      const notBefore = inputs.notBefore ? Date.parse(inputs.notBefore) : started - CLOCK_GRACE_MS;
      const first = await poll(
        { deadline: started + inputs.timeoutMinutes * 60_000, firstDelayMs: 1000, factor: 1.5, maxDelayMs: 15_000 },
        async () => {
          const answer = await client.nodeRuns(inputs.nodeName, 5);
          if (!answer)
            throw new Error(
              `espm has no node ${inputs.nodeName}: register it with PuppetNodeRegistration and give its nodeName`,
            );
          // The oldest run since the instance started is its first.
          const run = answer.runs.filter((r) => Date.parse(r.time) >= notBefore).at(-1);
          if (!run)
            progress(
              `PuppetFirstRun ${inputs.nodeName}: waiting for the first Puppet run, ${elapsed(started)} elapsed`,
            );
          return run;
        },
      );
      if (!("value" in first)) throw new Error(noRunMessage(inputs));
      const run = first.value;
      if (run.status === "failed") {
        const lines = run.errors.length
          ? run.errors.map((line) => `\n  ${line}`).join("")
          : "\n  (the report has no error lines; see the instance's /var/log/puppet-bootstrap.log)";
        throw new Error(`Puppet's first run on ${inputs.nodeName} (${run.time}) failed:${lines}`);
      }
      progress(
        `PuppetFirstRun ${inputs.nodeName}: ${run.status}, ${run.resources.changed} of ${run.resources.total} resources changed, after ${elapsed(started)}`,
      );
      const outs = {
        ...inputs,
        status: run.status,
        runAt: run.time,
        transactionUuid: run.transactionUuid,
        resources: run.resources,
      };
      return { id: `${inputs.nodeName}@${run.time}`, outs: defined(outs) };
    });
  },

  async read(id: string, state: FirstRunState): Promise<pulumi.dynamic.ReadResult<FirstRunState>> {
    // The first run happened or it did not; nothing later changes that.
    return { id, props: state };
  },

  async update(
    _id: string,
    olds: FirstRunState,
    news: FirstRunState,
  ): Promise<pulumi.dynamic.UpdateResult<FirstRunState>> {
    return { outs: defined({ ...olds, timeoutMinutes: news.timeoutMinutes, connection: news.connection }) };
  },

  async delete(): Promise<void> {
    // Nothing remote: the run is history, and the node and certificate have their own resources.
  },
} satisfies Lifecycle<FirstRunState>;
