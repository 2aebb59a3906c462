export declare const CLI_ENTRY: string;
export declare const CLI_BUNDLE: string;
export declare function newestSource(dirs?: string[]): number;
export declare function isStale(bundle?: string, dirs?: string[]): boolean;
export declare function build(entry?: string, outfile?: string): Promise<string>;
