// Mentions: the API counts `<@userId>` in a body as a mention of that user. People type
// `@username`; the composer turns the names of people it knows into that form, and the
// timeline shows it as `@Display Name`, as text.

export interface Person {
  id: string;
  username: string;
  displayName: string;
}

/** `body` with each `@username` of a known person written as `<@id>`. */
export function encodeMentions(body: string, people: readonly Person[]): string {
  const byName = new Map(people.map((p) => [p.username.toLowerCase(), p.id]));
  return body.replace(/(^|[^\w<])@([\w.-]+)/g, (whole, before: string, name: string) => {
    const id = byName.get(name.toLowerCase());
    return id ? `${before}<@${id}>` : whole;
  });
}

export type Segment = { text: string } | { mention: string; name: string };

/** The body in pieces: plain text, and mentions with the name to show. */
export function segments(body: string, people: ReadonlyMap<string, Person>): Segment[] {
  const out: Segment[] = [];
  let last = 0;
  for (const match of body.matchAll(/<@([0-9A-Za-z-]+)>/g)) {
    const at = match.index ?? 0;
    if (at > last) out.push({ text: body.slice(last, at) });
    const person = people.get(match[1]);
    out.push(person ? { mention: match[1], name: `@${person.displayName}` } : { text: match[0] });
    last = at + match[0].length;
  }
  if (last < body.length) out.push({ text: body.slice(last) });
  return out;
}
