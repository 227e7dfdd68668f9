/**
 * CSV files as ferkit's readers take them (a `path,label[,split]` list, FER2013's `labels.csv`):
 * csv-parse with a header row, where a bad row is skipped and counted instead of failing the file.
 */
import { parse } from "csv-parse/sync";
import { DataError, type SkipLog } from "./dataset.js";

/** One CSV record: its fields (trimmed) and the line it starts on (1-based). */
export interface CsvRecord {
  fields: string[];
  line: number;
}

/**
 * Parses CSV text with csv-parse (byte-order mark dropped, CRLF or LF, quoted fields, fields
 * trimmed). The first record is the header; a later one with a different number of fields is
 * skipped as `wrong_column_count` and a blank line as `blank_line`, both counted in `skipped`
 * with the line named; the other records are returned, the header first.
 * @param what the reader's name for messages ("CSV", "FER2013")
 * @throws DataError when the text is not CSV at all (csv-parse's message, with its line)
 */
export function parseCsvRecords(text: string, file: string, what: string, skipped: SkipLog): CsvRecord[] {
  let parsed: string[][];
  try {
    parsed = parse(text, { bom: true, relax_column_count: true, skip_empty_lines: false, trim: true }) as string[][];
  } catch (err) {
    throw new DataError(`${what}: ${file} is not valid CSV: ${(err as Error).message}`, { cause: err });
  }
  const out: CsvRecord[] = [];
  // With blank lines kept, every line starts a record but for the breaks inside quoted fields
  // (counted here: cheaper than csv-parse's per-record info).
  let line = 1;
  for (const record of parsed) {
    const start = line;
    line += 1 + countLineBreaks(record);
    if (record.length === 1 && record[0] === "") {
      if (out.length > 0) skipped.add("blank_line", `${file} line ${start}`);
      continue;
    }
    if (out.length > 0 && record.length !== out[0].fields.length) {
      skipped.add("wrong_column_count", `${file} line ${start}`, `${record.length} fields, the header has ${out[0].fields.length}`);
      continue;
    }
    out.push({ fields: record, line: start });
  }
  return out;
}

function countLineBreaks(fields: readonly string[]): number {
  let n = 0;
  for (const f of fields) for (let i = f.indexOf("\n"); i >= 0; i = f.indexOf("\n", i + 1)) n++;
  return n;
}

/**
 * The records of {@link parseCsvRecords} after the header, as objects keyed by the header's
 * column names, with their line numbers.
 */
export function csvRows(records: readonly CsvRecord[]): { row: Record<string, string>; line: number }[] {
  const header = records[0]?.fields ?? [];
  const out: { row: Record<string, string>; line: number }[] = new Array(Math.max(0, records.length - 1));
  for (let k = 1; k < records.length; k++) {
    const row: Record<string, string> = {};
    const fields = records[k].fields;
    for (let i = 0; i < header.length; i++) row[header[i]] = fields[i];
    out[k - 1] = { row, line: records[k].line };
  }
  return out;
}
