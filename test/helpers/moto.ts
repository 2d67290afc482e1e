/**
 * moto's EC2 server for the imaging tests: the one `.ci/run` started (ESPM_TEST_MOTO_URL), or one of
 * our own on a loopback port. Either way it is test/fixtures/moto/launcher.py, moto with images that
 * can stay pending or fail (see there).
 */
import { join } from "node:path";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { request } from "undici";
import { motoPython, startMotoServer, type MotoServer } from "../../scripts/lab/moto";
import { ROOT } from "./espm";

// The AWS SDK's default chain finds these, in this process and in every process it starts.
process.env.AWS_ACCESS_KEY_ID ??= "testing";
process.env.AWS_SECRET_ACCESS_KEY ??= "testing";
// The SDK's notice that it will want Node 22 after January 2027: noise in test output, not a failure.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

export const REGION = "us-east-1";
export const LAUNCHER = join(ROOT, "test/fixtures/moto/launcher.py");

export class Moto {
  private constructor(
    readonly url: string,
    private readonly server?: MotoServer,
  ) {}

  static async start(): Promise<Moto> {
    const given = process.env.ESPM_TEST_MOTO_URL;
    if (given) return new Moto(given);
    const server = await startMotoServer(motoPython(), [LAUNCHER]);
    return new Moto(server.url, server);
  }

  /** The stack config a program using RegisteredImage against this moto would have. */
  config(): Record<string, string> {
    return { "aws:region": REGION, "espm:ec2Endpoint": this.url };
  }

  ec2(): EC2Client {
    return new EC2Client({ region: REGION, endpoint: this.url });
  }

  private async post(path: string, body?: unknown): Promise<void> {
    const res = await request(`${this.url}${path}`, {
      method: "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    await res.body.dump();
    if (res.statusCode >= 300) throw new Error(`moto ${path} answered ${res.statusCode}`);
  }

  async reset(): Promise<void> {
    await this.post("/moto-api/reset");
    await this.imagesAvailableAfter(0);
  }

  /** Images made from now on are available after this many DescribeImages (0: at once). */
  async imagesAvailableAfter(describes: number): Promise<void> {
    const transition = describes === 0 ? { progression: "immediate" } : { progression: "manual", times: describes };
    await this.post("/moto-api/state-manager/set-transition", { model_name: "ec2::image", transition });
  }

  /** A running instance, with the given userdata if any. */
  async runInstance(userData?: string): Promise<string> {
    const client = this.ec2();
    const { Instances } = await client.send(
      new RunInstancesCommand({
        ImageId: "ami-12c6146b",
        InstanceType: "t3.micro",
        MinCount: 1,
        MaxCount: 1,
        UserData: userData === undefined ? undefined : Buffer.from(userData).toString("base64"),
      }),
    );
    client.destroy();
    return Instances![0]!.InstanceId!;
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}

let shared: Promise<Moto> | undefined;

export function sharedMoto(): Promise<Moto> {
  shared ??= Moto.start();
  return shared;
}

export async function stopSharedMoto(): Promise<void> {
  if (!shared) return;
  const moto = await shared.catch(() => undefined);
  shared = undefined;
  await moto?.stop();
}
