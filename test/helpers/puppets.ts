/** The Puppets the Puppet suites run on: the host's, and one in a Debian root (built on first use, then cached). */
import { debianRoot, puppet8 } from "../../scripts/lab/debian-root";

export interface PuppetUnderTest {
  label: string;
  /** The Debian root it runs in; none for the host's. */
  root(): Promise<string | undefined>;
}

export const PUPPETS: PuppetUnderTest[] = [
  { label: "Puppet 7 (Debian 12's, on the host)", root: async () => undefined },
  {
    label: "Puppet 8 (Debian 13's, in a Debian root)",
    root: async () => {
      const built = await debianRoot(puppet8());
      if (built.builtInSeconds) console.log(`      built the Puppet 8 root in ${built.builtInSeconds} s`);
      return built.dir;
    },
  },
];
