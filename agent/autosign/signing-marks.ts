/**
 * Puppet Server runs its autosign policy for every CSR submitted, espm's own included: the CSRs
 * espm submits for `POST /v1/certificates`, which it then signs itself through the CA API. Asking
 * `espm autosign` about those cost a Node process start each (Puppet Server waits for it before it
 * answers the submit), and the answer was "never enrolled", which hands the CSR to the site's
 * fallback policy: one that signs the name would sign espm's CSR at submit, and espm's own sign
 * would then fail.
 *
 * So while espm submits a CSR of its own, a file named for the certname in the marks directory
 * (beside the autosign socket, 0750, readable through espm's group as the socket is) tells the
 * wrapper, a shell script, to refuse it at once. A mark only ever makes the wrapper refuse, which
 * signs nothing; a CSR that arrives for the name meanwhile from elsewhere stays pending, and for an
 * enrolled name espm's sweep decides it later.
 */
import { chownSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { groupId } from "../enc/export";

/** The marks directory for the autosign socket at `socket`. */
export function signingMarksDir(socket: string): string {
  return join(dirname(socket), "signing");
}

export class SigningMarks {
  constructor(readonly dir: string) {}

  /** Makes the directory (0750, `group` when given), without the marks a stopped espm left. */
  prepare(group: string | undefined): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    if (group) chownSync(this.dir, -1, groupId(group));
    for (const leftover of readdirSync(this.dir)) rmSync(join(this.dir, leftover), { force: true });
  }

  /** Runs `submit` with the mark for `certname` in place; `certname` is one espm's name rules passed. */
  async whileSubmitting<T>(certname: string, submit: () => Promise<T>): Promise<T> {
    const mark = join(this.dir, certname);
    writeFileSync(mark, "", { mode: 0o640 });
    try {
      return await submit();
    } finally {
      rmSync(mark, { force: true });
    }
  }
}
