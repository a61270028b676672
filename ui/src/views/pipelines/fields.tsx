// Inputs for the side panel. A text field keeps what the user types while it has the focus (the
// YAML it writes may read back differently, e.g. a command's words), and commits on every change
// so the canvas and the YAML follow along.
import { useEffect, useRef, useState } from "react";
import type { InputHTMLAttributes } from "react";

type DraftProps = {
  value: string;
  onCommit: (v: string) => void;
  multiline?: boolean;
  /** Commit only when the field loses the focus (for YAML, which is invalid while half typed). */
  onBlurOnly?: boolean;
  rows?: number;
} & Omit<InputHTMLAttributes<HTMLInputElement>, "value" | "onChange">;

export function Draft(props: DraftProps) {
  const { value, onCommit, multiline, onBlurOnly, rows, ...rest } = props;
  const [draft, setDraft] = useState(value);
  const focused = useRef(false);
  useEffect(() => {
    if (!focused.current) setDraft(value);
  }, [value]);
  const common = {
    value: draft,
    onFocus: () => {
      focused.current = true;
    },
    onBlur: () => {
      focused.current = false;
      if (onBlurOnly && draft !== value) onCommit(draft);
      else setDraft(value);
    },
  };
  const change = (v: string) => {
    setDraft(v);
    if (!onBlurOnly) onCommit(v);
  };
  if (multiline) {
    return (
      <textarea
        {...common}
        name={rest.name}
        placeholder={rest.placeholder}
        rows={rows ?? 3}
        onChange={(e) => change(e.target.value)}
        spellCheck={false}
        aria-invalid={rest["aria-invalid"]}
      />
    );
  }
  return <input {...rest} {...common} onChange={(e) => change(e.target.value)} spellCheck={false} />;
}

/** Quotes a word for a command line when it needs it (the reverse of splitWords). */
export function quoteWord(w: string): string {
  if (w === "") return "''";
  if (!/[\s'"\\]/.test(w)) return w;
  if (!w.includes("'")) return `'${w}'`;
  return `"${w.replace(/(["\\])/g, "\\$1")}"`;
}

/** What a number field holds: a number when it reads as one, else the text (an expression). */
export function numberOrText(v: string): number | string | undefined {
  const t = v.trim();
  if (t === "") return undefined;
  return /^-?(\d+\.?\d*|\.\d+)(e-?\d+)?$/i.test(t) ? Number(t) : v;
}
